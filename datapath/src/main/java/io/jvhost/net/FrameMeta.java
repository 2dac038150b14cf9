package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Descriptor of the per-frame metadata record kept in a pool buffer's tailroom (the place build_skb
 * keeps {@code skb_shared_info}). Host byte order: the record never leaves the process.
 *
 * <pre>
 *  0  i64  timestamp   wall-clock nanoseconds since the epoch when the frame was taken
 *  8  i32  dataOffset  where the frame starts, from the buffer start (headroom may shrink when a header is prepended)
 * 12  i32  dataLen     bytes of frame present in the buffer
 * 16  i32  origLen     length of the frame on the wire (&gt; dataLen when truncated to a snap length)
 * 20  i16  queuePair
 * 22  i8   direction   {@link #DIR_TX} guest → tap, {@link #DIR_RX} tap → guest
 * 23  i8   flags       reserved
 * </pre>
 */
public final class FrameMeta {
    private FrameMeta() {
    }

    public static final int TIMESTAMP_OFFSET = 0;
    public static final int DATA_OFFSET_OFFSET = 8;
    public static final int DATA_LEN_OFFSET = 12;
    public static final int ORIG_LEN_OFFSET = 16;
    public static final int QUEUE_PAIR_OFFSET = 20;
    public static final int DIRECTION_OFFSET = 22;
    public static final int FLAGS_OFFSET = 23;
    /** The record occupies one cache line. */
    public static final int SIZE = 64;

    public static final int DIR_TX = 0;
    public static final int DIR_RX = 1;

    public static long timestamp(MemorySegment s, long base) {
        return s.get(ValueLayout.JAVA_LONG, base + TIMESTAMP_OFFSET);
    }

    public static void timestamp(MemorySegment s, long base, long v) {
        s.set(ValueLayout.JAVA_LONG, base + TIMESTAMP_OFFSET, v);
    }

    public static int dataOffset(MemorySegment s, long base) {
        return s.get(ValueLayout.JAVA_INT, base + DATA_OFFSET_OFFSET);
    }

    public static void dataOffset(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_INT, base + DATA_OFFSET_OFFSET, v);
    }

    public static int dataLen(MemorySegment s, long base) {
        return s.get(ValueLayout.JAVA_INT, base + DATA_LEN_OFFSET);
    }

    public static void dataLen(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_INT, base + DATA_LEN_OFFSET, v);
    }

    public static int origLen(MemorySegment s, long base) {
        return s.get(ValueLayout.JAVA_INT, base + ORIG_LEN_OFFSET);
    }

    public static void origLen(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_INT, base + ORIG_LEN_OFFSET, v);
    }

    public static int queuePair(MemorySegment s, long base) {
        return Short.toUnsignedInt(s.get(ValueLayout.JAVA_SHORT, base + QUEUE_PAIR_OFFSET));
    }

    public static void queuePair(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_SHORT, base + QUEUE_PAIR_OFFSET, (short) v);
    }

    public static int direction(MemorySegment s, long base) {
        return s.get(ValueLayout.JAVA_BYTE, base + DIRECTION_OFFSET);
    }

    public static void direction(MemorySegment s, long base, int v) {
        s.set(ValueLayout.JAVA_BYTE, base + DIRECTION_OFFSET, (byte) v);
    }
}
