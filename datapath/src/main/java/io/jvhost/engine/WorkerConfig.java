package io.jvhost.engine;

import io.jvhost.config.Configuration;

/**
 * The worker tuning a device is created with (values of {@link Configuration}'s tunables, which
 * document each one).
 *
 * @param weight            frames per ring per worker cycle ({@link Configuration#WEIGHT})
 * @param busyPollNanos     idle polling before sleeping ({@link Configuration#BUSY_POLL_NANOS})
 * @param adaptiveSpinNanos adaptive spin before sleeping ({@link Configuration#ADAPTIVE_SPIN_NANOS})
 * @param ackTimeoutMs      how long control waits for a worker ({@link Configuration#ACK_TIMEOUT_MS})
 */
public record WorkerConfig(int weight, long busyPollNanos, long adaptiveSpinNanos, long ackTimeoutMs) {

    public WorkerConfig {
        if (weight < 1) {
            throw new IllegalArgumentException("weight " + weight);
        }
        if (busyPollNanos < 0 || adaptiveSpinNanos < 0 || ackTimeoutMs < 1) {
            throw new IllegalArgumentException("busyPollNanos " + busyPollNanos + ", adaptiveSpinNanos "
                    + adaptiveSpinNanos + ", ackTimeoutMs " + ackTimeoutMs);
        }
    }

    /** The configured values (system properties, else defaults). */
    public static WorkerConfig defaults() {
        return new WorkerConfig(Configuration.WEIGHT.get(), Configuration.BUSY_POLL_NANOS.get(),
                Configuration.ADAPTIVE_SPIN_NANOS.get(), Configuration.ACK_TIMEOUT_MS.get());
    }

    public WorkerConfig withBusyPollNanos(long nanos) {
        return new WorkerConfig(weight, nanos, adaptiveSpinNanos, ackTimeoutMs);
    }

    public WorkerConfig withWeight(int w) {
        return new WorkerConfig(w, busyPollNanos, adaptiveSpinNanos, ackTimeoutMs);
    }
}
