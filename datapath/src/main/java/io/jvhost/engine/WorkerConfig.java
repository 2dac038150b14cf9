package io.jvhost.engine;

/**
 * Tuning of queue-pair workers (Aeron-style: property name, default, one typed accessor each).
 *
 * @param weight        frames per ring per worker cycle, so one direction cannot starve the other
 *                      (vhost-net's weight)
 * @param busyPollNanos how long an idle worker keeps polling rings and tap before it sleeps in
 *                      epoll (0: sleep at once; vhost-net's busyloop_timeout)
 * @param ackTimeoutMs  how long the control thread waits for a worker to acknowledge a command
 */
public record WorkerConfig(int weight, long busyPollNanos, long ackTimeoutMs) {
    public static final String WEIGHT_PROP_NAME = "jvhost.worker.weight";
    public static final int WEIGHT_DEFAULT = 64;
    public static final String BUSY_POLL_PROP_NAME = "jvhost.worker.busyPollNanos";
    public static final long BUSY_POLL_DEFAULT = 0;
    /**
     * Adaptive spin before sleeping, independent of busy-poll: when one of the last 8 idle gaps
     * (last work → next work) was shorter than this, the idle worker keeps polling this long
     * before it arms notifications and sleeps — a request/response guest answers within a few µs,
     * far less than a blocking wake-up across cores costs (≈ 55 µs round trip here, milliseconds on
     * a loaded machine). A worker that only ever sees long gaps never spins. 0: off.
     */
    public static final String ADAPTIVE_SPIN_PROP_NAME = "jvhost.worker.adaptiveSpinNanos";
    public static final long ADAPTIVE_SPIN_DEFAULT = 50_000;
    public static final String ACK_TIMEOUT_PROP_NAME = "jvhost.worker.ackTimeoutMs";
    public static final long ACK_TIMEOUT_DEFAULT = 5_000;

    public WorkerConfig {
        if (weight < 1) {
            throw new IllegalArgumentException("weight " + weight);
        }
        if (busyPollNanos < 0 || ackTimeoutMs < 1) {
            throw new IllegalArgumentException("busyPollNanos " + busyPollNanos + ", ackTimeoutMs " + ackTimeoutMs);
        }
    }

    /** Defaults, overridable by system properties. */
    public static WorkerConfig defaults() {
        return new WorkerConfig(Integer.getInteger(WEIGHT_PROP_NAME, WEIGHT_DEFAULT),
                Long.getLong(BUSY_POLL_PROP_NAME, BUSY_POLL_DEFAULT),
                Long.getLong(ACK_TIMEOUT_PROP_NAME, ACK_TIMEOUT_DEFAULT));
    }

    /** {@link #ADAPTIVE_SPIN_PROP_NAME} or its default. */
    public static long adaptiveSpinNanos() {
        return Math.max(0, Long.getLong(ADAPTIVE_SPIN_PROP_NAME, ADAPTIVE_SPIN_DEFAULT));
    }

    public WorkerConfig withBusyPollNanos(long nanos) {
        return new WorkerConfig(weight, nanos, ackTimeoutMs);
    }

    public WorkerConfig withWeight(int w) {
        return new WorkerConfig(w, busyPollNanos, ackTimeoutMs);
    }
}
