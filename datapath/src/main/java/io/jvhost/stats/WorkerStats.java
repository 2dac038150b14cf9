package io.jvhost.stats;

import java.util.List;

/**
 * A point-in-time copy of one worker's load ({@link WorkerLoad}). Immutable.
 *
 * @param index      the worker's index in its pool ({@code --queue-affinity} names it)
 * @param name       thread name
 * @param pinnedCpu  the CPU it is pinned to ({@code --cpus}), or -1
 * @param lastCpu    the CPU it last ran on, or -1 before it ran
 * @param tid        kernel thread id, or 0 before it started
 * @param queuePairs the queue pairs it holds ({@code "<device> q<N>"})
 * @param values     indexed by the {@link WorkerLoad} constants
 */
public record WorkerStats(int index, String name, int pinnedCpu, int lastCpu, int tid, List<String> queuePairs,
                          long[] values) {

    public WorkerStats {
        queuePairs = List.copyOf(queuePairs);
        values = values.clone();
    }

    public long get(int value) {
        return values[value];
    }

    /** Busy share of the time accounted so far, 0..1 (0 before any). */
    public double busyShare() {
        long total = get(WorkerLoad.BUSY_NANOS) + get(WorkerLoad.IDLE_NANOS) + get(WorkerLoad.SLEEP_NANOS);
        return total == 0 ? 0 : (double) get(WorkerLoad.BUSY_NANOS) / total;
    }

    /** Awake share (busy + idle polling) of the time accounted so far, 0..1. */
    public double awakeShare() {
        long total = get(WorkerLoad.BUSY_NANOS) + get(WorkerLoad.IDLE_NANOS) + get(WorkerLoad.SLEEP_NANOS);
        return total == 0 ? 0 : (double) (get(WorkerLoad.BUSY_NANOS) + get(WorkerLoad.IDLE_NANOS)) / total;
    }
}
