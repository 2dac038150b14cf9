package io.jvhost.stats;

/**
 * Why a frame was dropped. Each reason has its own per-queue counter; the names appear unchanged in
 * the stats table and JSON.
 */
public enum DropReason {
    /** TX: frame shorter than an Ethernet header. */
    TX_TOO_SHORT,
    /** TX: frame larger than the negotiated maximum (MTU without GSO, 64 KiB with). */
    TX_TOO_LONG,
    /**
     * TX: gso_type unknown or not negotiated, gso_size 0, ECN without HOST_ECN (or on UDP_L4), RSC_INFO from
     * a guest, a UDP_L4 frame whose segments would exceed the MTU or number more than 128.
     */
    TX_BAD_GSO,
    /**
     * TX: NEEDS_CSUM without CSUM negotiated, or csum_start/offset outside the frame; a UDP_L4 frame without
     * NEEDS_CSUM or whose checksum is not the UDP header's (csum_offset 6, UDP header inside the frame).
     */
    TX_BAD_CSUM,
    /** TX: chain without a complete header or with device-writable descriptors. */
    TX_BAD_CHAIN,
    /** TX: the tap refused the frame with an error other than EAGAIN (e.g. EINVAL on GSO fields). */
    TX_TAP_ERROR,
    /** RX: the guest posted buffers too small for the frame waiting on the tap (dropped, never truncated). */
    RX_TOO_BIG,
    /** RX: chain unusable (read-only descriptors or too short for the header). */
    RX_BAD_CHAIN,
    /** TX: the ring is disabled (SET_VRING_ENABLE 0): chains are consumed and dropped, as the spec says. */
    TX_RING_DISABLED,
    /** Capture: no free pool buffer, the frame was not captured (traffic unaffected). */
    CAPTURE_NO_BUFFER;

    private static final DropReason[] VALUES = values();

    public static DropReason of(int ordinal) {
        return VALUES[ordinal];
    }

    public static int count() {
        return VALUES.length;
    }
}
