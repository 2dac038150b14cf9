package io.jvhost.stats;


import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Counters of one queue pair: {@link Counter}s and drops by {@link DropReason}.
 *
 * <p>Threading: single writer (the queue-pair worker), any number of readers. The writer does a
 * plain read of its own value and an opaque store (no fence, but never torn and eventually visible);
 * readers use opaque loads. A reader therefore sees each counter monotonic but not a consistent cut
 * across counters, which is what stats need. The values live in one array padded by two cache lines
 * at both ends so that the counters of neighbouring queue pairs (other writer threads) never share a
 * line (adjacent-line prefetch included).
 */
public final class QueueCounters {
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    /** Two 64-byte lines of longs. */
    private static final int PAD = 16;
    private static final int DROPS = PAD + Counter.count();

    private final long[] values = new long[PAD + Counter.count() + DropReason.count() + PAD];

    /** Worker only. */
    public void add(Counter c, long delta) {
        int i = PAD + c.ordinal();
        LONGS.setOpaque(values, i, values[i] + delta);
    }

    /** Worker only. */
    public void increment(Counter c) {
        add(c, 1);
    }

    /** Worker only. */
    public void drop(DropReason r) {
        int i = DROPS + r.ordinal();
        LONGS.setOpaque(values, i, values[i] + 1);
    }

    /** Any thread. */
    public long get(Counter c) {
        return (long) LONGS.getOpaque(values, PAD + c.ordinal());
    }

    /** Any thread. */
    public long drops(DropReason r) {
        return (long) LONGS.getOpaque(values, DROPS + r.ordinal());
    }

    /** Any thread: sum of all drop reasons. */
    public long totalDrops() {
        long s = 0;
        for (int i = 0; i < DropReason.count(); i++) {
            s += (long) LONGS.getOpaque(values, DROPS + i);
        }
        return s;
    }

    /** Any thread: a copy, counters first then drops, in ordinal order. */
    public long[] snapshot() {
        long[] out = new long[Counter.count() + DropReason.count()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (long) LONGS.getOpaque(values, PAD + i);
        }
        return out;
    }
}
