package io.jvhost.stats;

/** Per-queue-pair event counters (drops are counted separately, by {@link io.jvhost.net.DropReason}). */
public enum Counter {
    TX_FRAMES,
    TX_BYTES,
    RX_FRAMES,
    RX_BYTES,
    /** TX kick eventfd signalled (one per wake-up, however many writes the guest made). */
    TX_KICKS,
    RX_KICKS,
    /** Call eventfd writes towards the guest. */
    TX_CALLS,
    RX_CALLS,
    /** Calls the guest asked us not to send (flags / EVENT_IDX). */
    CALLS_SUPPRESSED,
    /** Non-empty batches processed. */
    TX_BATCHES,
    RX_BATCHES,
    /** Worker cycles (busy-poll or wake-up) that found no work. */
    EMPTY_POLLS,
    /** Times writev returned EAGAIN and TX waited for EPOLLOUT. */
    TX_BACKPRESSURE,
    /** Times RX found a frame on the tap but no guest buffers (reading paused until a kick). */
    RX_NO_BUFFERS,
    /** Epoll wake-ups (sleeps ended). */
    WAKEUPS,
    /**
     * Guest-memory faults (SIGBUS / EFAULT: the front-end shrank a region it passed); each one
     * stopped the queue pair's rings (VirtqError.MEMORY_FAULT) until the front-end restarts them.
     */
    MEMORY_FAULTS,
    /** Times the TX ring was marked broken (a driver or front-end violation; see the ring's broken reason). */
    TX_RING_BROKEN,
    /** Times the RX ring was marked broken. */
    RX_RING_BROKEN;

    private static final Counter[] VALUES = values();

    public static Counter of(int ordinal) {
        return VALUES[ordinal];
    }

    public static int count() {
        return VALUES.length;
    }
}
