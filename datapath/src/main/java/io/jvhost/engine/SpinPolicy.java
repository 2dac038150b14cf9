package io.jvhost.engine;

/**
 * The idle strategy of a worker, apart from its duty cycle (Agrona's {@code IdleStrategy} split
 * from {@code Agent.doWork}): after a cycle that found nothing to do, whether to keep polling or
 * to arm notifications and sleep in {@code epoll_wait}.
 *
 * <ul>
 *   <li>Busy-poll: keep polling for {@code busyPollNanos} after the last work (0: off; vhost-net's
 *       {@code busyloop_timeout}).</li>
 *   <li>Adaptive spin: when one of the last 8 idle gaps (last work → next work) was shorter than
 *       {@code adaptiveSpinNanos}, keep polling that long — a request/response guest answers within
 *       a few µs, far less than a blocking wake-up across cores costs. A worker that only sees long
 *       gaps never spins. 0: off.</li>
 * </ul>
 *
 * <p>Threading: the worker's own; no allocation.
 */
final class SpinPolicy {
    private long busyPollNanos;
    private long adaptiveSpinNanos;
    /** One bit per recent idle gap (newest lowest), set when the gap was shorter than the adaptive spin. */
    private int shortGaps;
    /** Last cycle with work or a wake-up, last cycle with work. */
    private long lastWork;
    private long lastRealWork;
    private boolean idle;

    SpinPolicy(long busyPollNanos, long adaptiveSpinNanos) {
        setBusyPollNanos(busyPollNanos);
        setAdaptiveSpinNanos(adaptiveSpinNanos);
    }

    void setBusyPollNanos(long nanos) {
        if (nanos < 0) {
            throw new IllegalArgumentException("busyPollNanos " + nanos);
        }
        busyPollNanos = nanos;
    }

    void setAdaptiveSpinNanos(long nanos) {
        if (nanos < 0) {
            throw new IllegalArgumentException("adaptiveSpinNanos " + nanos);
        }
        adaptiveSpinNanos = nanos;
        shortGaps = 0;
    }

    /** The worker starts (or woke up) at {@code now}. */
    void reset(long now) {
        lastWork = now;
        lastRealWork = now;
        idle = false;
    }

    /** A cycle did work at {@code now}. */
    void onWork(long now) {
        if (idle) {
            // An idle gap ended: would a short spin have caught this work without sleeping?
            shortGaps = (shortGaps << 1 | (now - lastRealWork < adaptiveSpinNanos ? 1 : 0)) & 0xff;
            idle = false;
        }
        lastWork = now;
        lastRealWork = now;
    }

    /**
     * A cycle found nothing to do at {@code now}.
     *
     * @return true to keep polling, false to arm notifications and sleep
     */
    boolean keepPolling(long now) {
        idle = true;
        long spin = shortGaps != 0 ? Math.max(busyPollNanos, adaptiveSpinNanos) : busyPollNanos;
        return spin > 0 && now - lastWork < spin;
    }

    /** The worker woke up from a sleep at {@code now}. */
    void onWake(long now) {
        lastWork = now;
    }
}
