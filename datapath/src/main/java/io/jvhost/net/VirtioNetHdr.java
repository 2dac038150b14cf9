package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Descriptor of {@code struct virtio_net_hdr} (virtio 1.x §5.1.6), the header that precedes every
 * frame on both rings and that the tap exchanges unchanged when {@code IFF_VNET_HDR} is set.
 *
 * <pre>
 *  0  u8    flags        NEEDS_CSUM | DATA_VALID | RSC_INFO
 *  1  u8    gso_type     NONE | TCPV4 | UDP | TCPV6 | UDP_L4, optionally | ECN
 *  2  le16  hdr_len
 *  4  le16  gso_size
 *  6  le16  csum_start
 *  8  le16  csum_offset
 * 10  le16  num_buffers  (only in the 12-byte layout: VERSION_1 or MRG_RXBUF negotiated)
 * </pre>
 *
 * <p>All multi-byte fields are little-endian (virtio 1.x; the tap is set to the same order because
 * x86/arm64 hosts are little-endian and legacy guests on such hosts use native order). Accessors are
 * static, take a segment and a base offset, allocate nothing and may be called from any thread on a
 * segment that thread owns.
 */
public final class VirtioNetHdr {
    private VirtioNetHdr() {
    }

    /** Little-endian unaligned 16-bit field layout: the header may sit at any byte offset in a guest buffer. */
    public static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public static final int FLAGS_OFFSET = 0;
    public static final int GSO_TYPE_OFFSET = 1;
    public static final int HDR_LEN_OFFSET = 2;
    public static final int GSO_SIZE_OFFSET = 4;
    public static final int CSUM_START_OFFSET = 6;
    public static final int CSUM_OFFSET_OFFSET = 8;
    public static final int NUM_BUFFERS_OFFSET = 10;

    /** Header size without {@code num_buffers}: legacy devices without MRG_RXBUF. */
    public static final int LEGACY_SIZE = 10;
    /** Header size with {@code num_buffers}: VERSION_1 or MRG_RXBUF negotiated. */
    public static final int SIZE = 12;

    /** Checksum is partial: the receiver must complete it from csum_start, storing at csum_start + csum_offset. */
    public static final int FLAG_NEEDS_CSUM = 1;
    /** Checksum already validated (RX only). */
    public static final int FLAG_DATA_VALID = 2;
    /** csum_start/csum_offset carry coalescing info (RSC_EXT, RX only): never valid from a guest. */
    public static final int FLAG_RSC_INFO = 4;

    public static final int GSO_NONE = 0;
    public static final int GSO_TCPV4 = 1;
    public static final int GSO_UDP = 3;
    public static final int GSO_TCPV6 = 4;
    public static final int GSO_UDP_L4 = 5;
    /** Or-ed into gso_type: the TCP segments carry the CWR bit (ECN). */
    public static final int GSO_ECN = 0x80;

    /** Ethernet header length: the shortest frame a tap will take. */
    public static final int ETH_HLEN = 14;
    /** Shortest IPv4 header (no options): where a transport header can start at the earliest after Ethernet. */
    public static final int IPV4_MIN_HLEN = 20;
    /** UDP header length. */
    public static final int UDP_HLEN = 8;
    /** Offset of the checksum field in the UDP header: csum_offset of every UDP_L4 frame. */
    public static final int UDP_CSUM_OFFSET = 6;
    /** 802.1Q tag length, allowed on top of the MTU. */
    public static final int VLAN_HLEN = 4;
    /** Largest frame (without the virtio-net header) a GSO/TSO peer may produce. */
    public static final int MAX_GSO_FRAME = 65550;
    /** Largest frame plus the 12-byte header: what a guest with TSO must be able to receive (vhost-net's figure). */
    public static final int MAX_GSO_BUFFER = MAX_GSO_FRAME + SIZE;

    /** Header size the device and the tap use for the given negotiated virtio features. */
    public static int size(long features) {
        return VirtioFeatures.has(features, VirtioFeatures.F_VERSION_1)
                || VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF) ? SIZE : LEGACY_SIZE;
    }

    public static int flags(MemorySegment s, long base) {
        return Byte.toUnsignedInt(s.get(ValueLayout.JAVA_BYTE, base + FLAGS_OFFSET));
    }

    public static int gsoType(MemorySegment s, long base) {
        return Byte.toUnsignedInt(s.get(ValueLayout.JAVA_BYTE, base + GSO_TYPE_OFFSET));
    }

    public static int hdrLen(MemorySegment s, long base) {
        return Short.toUnsignedInt(s.get(LE16, base + HDR_LEN_OFFSET));
    }

    public static int gsoSize(MemorySegment s, long base) {
        return Short.toUnsignedInt(s.get(LE16, base + GSO_SIZE_OFFSET));
    }

    public static int csumStart(MemorySegment s, long base) {
        return Short.toUnsignedInt(s.get(LE16, base + CSUM_START_OFFSET));
    }

    public static int csumOffset(MemorySegment s, long base) {
        return Short.toUnsignedInt(s.get(LE16, base + CSUM_OFFSET_OFFSET));
    }

    public static int numBuffers(MemorySegment s, long base) {
        return Short.toUnsignedInt(s.get(LE16, base + NUM_BUFFERS_OFFSET));
    }

    public static void flags(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_BYTE, base + FLAGS_OFFSET, (byte) v);
    }

    public static void gsoType(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_BYTE, base + GSO_TYPE_OFFSET, (byte) v);
    }

    public static void hdrLen(MemorySegment s, long base, int v) {
        s.set(LE16, base + HDR_LEN_OFFSET, (short) v);
    }

    public static void gsoSize(MemorySegment s, long base, int v) {
        s.set(LE16, base + GSO_SIZE_OFFSET, (short) v);
    }

    public static void csumStart(MemorySegment s, long base, int v) {
        s.set(LE16, base + CSUM_START_OFFSET, (short) v);
    }

    public static void csumOffset(MemorySegment s, long base, int v) {
        s.set(LE16, base + CSUM_OFFSET_OFFSET, (short) v);
    }

    public static void numBuffers(MemorySegment s, long base, int v) {
        s.set(LE16, base + NUM_BUFFERS_OFFSET, (short) v);
    }

    /** Zeroes a header of {@code size} bytes (10 or 12): no offload, GSO_NONE, num_buffers 0. */
    public static void clear(MemorySegment s, long base, int size) {
        s.asSlice(base, size).fill((byte) 0);
    }

    /** gso_type without the ECN bit. */
    public static int gsoProtocol(int gsoType) {
        return gsoType & ~GSO_ECN;
    }
}
