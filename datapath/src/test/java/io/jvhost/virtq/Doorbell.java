package io.jvhost.virtq;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * eventfd semantics for tests without the syscall layer: {@link #ring()} adds one, {@link #await}
 * consumes everything or fails when nothing arrives in time (a lost wake-up).
 */
final class Doorbell {
    private final AtomicLong count = new AtomicLong();
    private final AtomicLong rings = new AtomicLong();
    private volatile Thread waiter;

    void ring() {
        rings.incrementAndGet();
        count.incrementAndGet();
        Thread w = waiter;
        if (w != null) {
            LockSupport.unpark(w);
        }
    }

    long rings() {
        return rings.get();
    }

    /** Waits for at least one ring; AssertionError ("lost wake-up") after {@code timeoutMs}. */
    void await(String what, long timeoutMs) {
        waiter = Thread.currentThread();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (count.getAndSet(0) == 0) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new AssertionError("lost wake-up: no " + what + " within " + timeoutMs + " ms");
            }
            LockSupport.parkNanos(this, Math.min(left, TimeUnit.MILLISECONDS.toNanos(100)));
            if (Thread.interrupted()) {
                throw new AssertionError("interrupted waiting for " + what);
            }
        }
    }
}
