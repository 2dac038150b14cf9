package io.jvhost.stats;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.List;

/**
 * The load of one worker thread: its duty cycles by outcome, the time spent in each kind, and the
 * queue pairs it holds — what {@code jvhost stats} shows per worker and what a metrics exporter reads
 * ({@link #snapshot}).
 *
 * <p>Time is split three ways: <b>busy</b> (cycles that moved frames or ran commands), <b>idle</b>
 * (cycles that found nothing: busy-polling, arming notifications) and <b>asleep</b> (in
 * {@code epoll_wait}). busy / (busy + idle + asleep) is the worker's load, as OVS-DPDK's
 * {@code pmd-stats-show} reports "processing cycles".
 *
 * <p>Threading: single writer (the worker: plain read of its own value, opaque store), any number of
 * readers (opaque loads): each value is monotonic, not a consistent cut across values. Padded like
 * {@link QueueCounters} so two workers' loads never share a cache line.
 */
public final class WorkerLoad {
    /** Cycles that did work (frames, commands). */
    public static final int BUSY_CYCLES = 0;
    /** Cycles that found nothing to do (polling, or about to sleep). */
    public static final int IDLE_CYCLES = 1;
    /** Sleeps in epoll_wait. */
    public static final int SLEEPS = 2;
    /** Nanoseconds in busy cycles. */
    public static final int BUSY_NANOS = 3;
    /** Nanoseconds in idle cycles, awake. */
    public static final int IDLE_NANOS = 4;
    /** Nanoseconds asleep in epoll_wait. */
    public static final int SLEEP_NANOS = 5;
    /** Control commands run. */
    public static final int COMMANDS = 6;
    /** Failures contained to one queue pair (guest-memory faults, other errors in a pair's work). */
    public static final int PAIR_FAULTS = 7;
    /** Times an idle pair was parked (not polled until an event for it) while the worker stayed awake. */
    public static final int PARKS = 8;
    /** Number of values. */
    public static final int COUNT = 9;

    /** Names of the values, as JSON and metrics show them (index = constant). */
    public static final List<String> NAMES = List.of("busy_cycles", "idle_cycles", "sleeps", "busy_ns", "idle_ns",
            "sleep_ns", "commands", "pair_faults", "parks");

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle INTS = MethodHandles.arrayElementVarHandle(int[].class);
    /** Two 64-byte lines of longs. */
    private static final int PAD = 16;
    private static final int QUEUE_PAIRS = 0;
    private static final int CPU = 1;

    private final long[] values = new long[PAD + COUNT + PAD];
    /** Queue pairs held, last CPU seen; padded the same way. */
    private final int[] ints = new int[2 * PAD + 2];
    private volatile List<String> pairs = List.of();

    public WorkerLoad() {
        INTS.setOpaque(ints, PAD + CPU, -1);
    }

    /** Worker only. */
    public void add(int value, long delta) {
        int i = PAD + value;
        LONGS.setOpaque(values, i, values[i] + delta);
    }

    /** Worker only. */
    public void increment(int value) {
        add(value, 1);
    }

    /** Worker only: the CPU it ran on lately. */
    public void setCpu(int cpu) {
        INTS.setOpaque(ints, PAD + CPU, cpu);
    }

    /** Worker only: the queue pairs it now holds (names for display; the list is not copied). */
    public void setPairs(List<String> names) {
        INTS.setOpaque(ints, PAD + QUEUE_PAIRS, names.size());
        pairs = names;
    }

    /** Any thread. */
    public long get(int value) {
        return (long) LONGS.getOpaque(values, PAD + value);
    }

    /** Any thread: queue pairs held. */
    public int queuePairs() {
        return (int) INTS.getOpaque(ints, PAD + QUEUE_PAIRS);
    }

    /** Any thread. */
    public WorkerStats snapshot(int index, String name, int pinnedCpu, int tid) {
        long[] v = new long[COUNT];
        for (int i = 0; i < COUNT; i++) {
            v[i] = get(i);
        }
        return new WorkerStats(index, name, pinnedCpu, (int) INTS.getOpaque(ints, PAD + CPU), tid, pairs, v);
    }
}
