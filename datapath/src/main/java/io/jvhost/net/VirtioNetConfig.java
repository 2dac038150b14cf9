package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * {@code struct virtio_net_config} (virtio 1.x §5.1.4) as served by VHOST_USER_GET_CONFIG:
 * the fields up to {@code mtu} (RSS and speed/duplex are not offered and read as zero).
 * Layout is little-endian (virtio 1.x). Immutable value.
 *
 * @param mac           6-byte MAC address
 * @param status        {@link #STATUS_LINK_UP} | {@link #STATUS_ANNOUNCE}
 * @param maxQueuePairs max_virtqueue_pairs
 * @param mtu           MTU exposed to the guest
 */
public record VirtioNetConfig(byte[] mac, int status, int maxQueuePairs, int mtu) {

    public static final int MAC_OFFSET = 0;
    public static final int MAC_LENGTH = 6;
    public static final int STATUS_OFFSET = 6;
    public static final int MAX_VIRTQUEUE_PAIRS_OFFSET = 8;
    public static final int MTU_OFFSET = 10;
    public static final int SPEED_OFFSET = 12;
    public static final int DUPLEX_OFFSET = 16;
    /** Size of the config space we serve (through duplex, padded; later RSS fields are absent). */
    public static final int SIZE = 24;

    /** Smallest MTU a virtio-net device may report (IPv4's minimum datagram). */
    public static final int MIN_MTU = 68;
    /** Largest MTU ({@code mtu} is a 16-bit field). */
    public static final int MAX_MTU = 65535;

    public static final int STATUS_LINK_UP = 1;
    public static final int STATUS_ANNOUNCE = 2;

    private static final ValueLayout.OfShort LE_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** virtio: speed unknown. */
    private static final int SPEED_UNKNOWN = -1;
    /** virtio: duplex unknown. */
    private static final byte DUPLEX_UNKNOWN = (byte) 0xff;

    public VirtioNetConfig {
        if (mac == null || mac.length != MAC_LENGTH) {
            throw new IllegalArgumentException("mac must be 6 bytes");
        }
        mac = mac.clone();
        if (maxQueuePairs < 1 || maxQueuePairs > 0x8000) {
            throw new IllegalArgumentException("maxQueuePairs out of range: " + maxQueuePairs);
        }
        String bad = checkMtu(mtu);
        if (bad != null) {
            throw new IllegalArgumentException(bad);
        }
    }

    /** Null when {@code mtu} is in [{@link #MIN_MTU}, {@link #MAX_MTU}], else why not. */
    public static String checkMtu(long mtu) {
        return mtu >= MIN_MTU && mtu <= MAX_MTU ? null
                : "MTU " + Long.toUnsignedString(mtu) + " outside [" + MIN_MTU + ", " + MAX_MTU + "]";
    }

    @Override
    public byte[] mac() {
        return mac.clone();
    }

    public VirtioNetConfig withMac(byte[] newMac) {
        return new VirtioNetConfig(newMac, status, maxQueuePairs, mtu);
    }

    public VirtioNetConfig withMtu(int newMtu) {
        return new VirtioNetConfig(mac, status, maxQueuePairs, newMtu);
    }

    public VirtioNetConfig withStatus(int newStatus) {
        return new VirtioNetConfig(mac, newStatus, maxQueuePairs, mtu);
    }

    /** Writes the full {@link #SIZE}-byte config space into {@code dst} at offset 0. */
    public void writeTo(MemorySegment dst) {
        dst.asSlice(0, SIZE).fill((byte) 0);
        MemorySegment.copy(mac, 0, dst, ValueLayout.JAVA_BYTE, MAC_OFFSET, MAC_LENGTH);
        dst.set(LE_U16, STATUS_OFFSET, (short) status);
        dst.set(LE_U16, MAX_VIRTQUEUE_PAIRS_OFFSET, (short) maxQueuePairs);
        dst.set(LE_U16, MTU_OFFSET, (short) mtu);
        dst.set(LE_U32, SPEED_OFFSET, SPEED_UNKNOWN);
        dst.set(ValueLayout.JAVA_BYTE, DUPLEX_OFFSET, DUPLEX_UNKNOWN);
    }

    /** Reads a config space written by {@link #writeTo} (driver side). */
    public static VirtioNetConfig readFrom(MemorySegment src) {
        byte[] mac = new byte[MAC_LENGTH];
        MemorySegment.copy(src, ValueLayout.JAVA_BYTE, MAC_OFFSET, mac, 0, MAC_LENGTH);
        return new VirtioNetConfig(mac, Short.toUnsignedInt(src.get(LE_U16, STATUS_OFFSET)),
                Short.toUnsignedInt(src.get(LE_U16, MAX_VIRTQUEUE_PAIRS_OFFSET)),
                Short.toUnsignedInt(src.get(LE_U16, MTU_OFFSET)));
    }

    /** MAC as aa:bb:cc:dd:ee:ff. */
    public static String formatMac(byte[] mac) {
        StringBuilder sb = new StringBuilder(17);
        for (int i = 0; i < mac.length; i++) {
            if (i > 0) {
                sb.append(':');
            }
            sb.append(String.format("%02x", mac[i] & 0xff));
        }
        return sb.toString();
    }

    /** Parses aa:bb:cc:dd:ee:ff. */
    public static byte[] parseMac(String s) {
        String[] parts = s.split(":");
        if (parts.length != MAC_LENGTH) {
            throw new IllegalArgumentException("bad MAC address: " + s);
        }
        byte[] mac = new byte[MAC_LENGTH];
        for (int i = 0; i < MAC_LENGTH; i++) {
            mac[i] = (byte) Integer.parseInt(parts[i], 16);
        }
        return mac;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof VirtioNetConfig c && java.util.Arrays.equals(mac, c.mac) && status == c.status
                && maxQueuePairs == c.maxQueuePairs && mtu == c.mtu;
    }

    @Override
    public int hashCode() {
        return java.util.Arrays.hashCode(mac) * 31 + status * 7 + maxQueuePairs * 3 + mtu;
    }

    @Override
    public String toString() {
        return "VirtioNetConfig[mac=" + formatMac(mac) + ", status=" + status + ", maxQueuePairs=" + maxQueuePairs
                + ", mtu=" + mtu + "]";
    }
}
