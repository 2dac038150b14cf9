package io.jvhost.net;

/**
 * Feature bit numbers of the virtio-net device (virtio 1.x §5.1.3) and the transport bits the net
 * code looks at. Bits are numbers, not masks: test them with {@link #has(long, int)}.
 */
public final class VirtioNetFeatures {
    private VirtioNetFeatures() {
    }

    /** Device handles packets with partial checksum (guest → device: the guest may send NEEDS_CSUM). */
    public static final int CSUM = 0;
    /** Driver handles packets with partial checksum (device → guest). */
    public static final int GUEST_CSUM = 1;
    public static final int CTRL_GUEST_OFFLOADS = 2;
    public static final int MTU = 3;
    public static final int MAC = 5;
    public static final int GUEST_TSO4 = 7;
    public static final int GUEST_TSO6 = 8;
    public static final int GUEST_ECN = 9;
    public static final int GUEST_UFO = 10;
    public static final int HOST_TSO4 = 11;
    public static final int HOST_TSO6 = 12;
    public static final int HOST_ECN = 13;
    public static final int HOST_UFO = 14;
    public static final int MRG_RXBUF = 15;
    public static final int STATUS = 16;
    public static final int CTRL_VQ = 17;
    public static final int MQ = 22;
    public static final int INDIRECT_DESC = 28;
    public static final int EVENT_IDX = 29;
    public static final int VERSION_1 = 32;
    public static final int GUEST_USO4 = 54;
    public static final int GUEST_USO6 = 55;
    public static final int HOST_USO = 56;

    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }

    public static long bit(int bit) {
        return 1L << bit;
    }

    /** True when the guest may send GSO frames of any kind (TX frames up to {@link VirtioNetHdr#MAX_GSO_FRAME}). */
    public static boolean hostGso(long features) {
        return has(features, HOST_TSO4) || has(features, HOST_TSO6) || has(features, HOST_UFO) || has(features, HOST_USO);
    }

    /** True when the guest accepts GSO frames (RX frames up to {@link VirtioNetHdr#MAX_GSO_FRAME}). */
    public static boolean guestGso(long features) {
        return has(features, GUEST_TSO4) || has(features, GUEST_TSO6) || has(features, GUEST_UFO)
                || has(features, GUEST_USO4) || has(features, GUEST_USO6);
    }
}
