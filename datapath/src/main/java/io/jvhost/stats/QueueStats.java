package io.jvhost.stats;

import org.HdrHistogram.Histogram;

/**
 * A point-in-time copy of one queue pair's counters and histograms, taken without stopping the
 * worker (see {@link QueueCounters} for what "point in time" means). Immutable.
 *
 * @param device      device name
 * @param queuePair   queue pair index
 * @param values      counters then drops, as {@link QueueCounters#snapshot()} returns them
 * @param serviceTime kick-to-used service time in nanoseconds (may be null)
 * @param batchSizes  frames per batch (may be null)
 */
public record QueueStats(String device, int queuePair, long[] values, Histogram serviceTime, Histogram batchSizes) {

    public static QueueStats of(String device, int queuePair, QueueCounters counters, QueueLatency latency) {
        return new QueueStats(device, queuePair, counters.snapshot(),
                latency == null ? null : latency.serviceTime(), latency == null ? null : latency.batchSizes());
    }

    public long get(Counter c) {
        return values[c.ordinal()];
    }

    public long drops(DropReason r) {
        return values[Counter.count() + r.ordinal()];
    }

    public long totalDrops() {
        long s = 0;
        for (int i = 0; i < DropReason.count(); i++) {
            s += values[Counter.count() + i];
        }
        return s;
    }
}
