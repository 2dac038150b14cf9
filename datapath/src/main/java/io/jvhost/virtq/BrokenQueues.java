package io.jvhost.virtq;

import java.util.concurrent.atomic.AtomicLong;

/** The process-wide count of virtqueues marked broken, whatever their format. Any thread. */
public final class BrokenQueues {
    private static final AtomicLong COUNT = new AtomicLong();

    private BrokenQueues() {
    }

    /** Queues marked broken since the process started (a restart of the ring does not lower it). */
    public static long count() {
        return COUNT.get();
    }

    static void increment() {
        COUNT.incrementAndGet();
    }
}
