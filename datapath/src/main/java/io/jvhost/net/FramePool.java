package io.jvhost.net;

import org.jctools.queues.varhandle.MpmcVarHandleArrayQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * Fixed set of native frame buffers for frames that must leave guest memory (capture, backlog).
 *
 * <p>Each buffer has the build_skb layout, every part a multiple of the cache line:
 * <pre>
 * | headroom (prepend a vnet / pcap / encapsulation header in place) | frame (maxFrame) | tailroom: {@link FrameMeta} |
 * </pre>
 * Buffers are created once (one native allocation, page aligned, so every buffer is cache-line
 * aligned) and recycled through a lock-free JCTools MPMC queue: {@link #acquire()} and
 * {@link #release(Frame)} may be called from any thread and allocate nothing. A released frame must
 * not be touched again by the releasing thread. {@link #close()} frees the memory; call it only when
 * no thread uses a frame any more.
 */
public final class FramePool implements AutoCloseable {
    public static final int CACHE_LINE = 64;
    /** Room for a 12-byte vnet header, a 16-byte pcap record header or an IPv6+UDP+VXLAN encapsulation. */
    public static final int DEFAULT_HEADROOM = 128;
    private static final int PAGE = 4096;

    private final Arena arena;
    private final MemorySegment memory;
    private final Frame[] frames;
    private final MpmcVarHandleArrayQueue<Frame> free;
    private final int headroom;
    private final int frameCapacity;
    private final int bufferSize;

    /**
     * @param count    number of buffers (at least 2: the JCTools queue needs capacity ≥ 2)
     * @param maxFrame largest frame a buffer holds
     * @param headroom bytes reserved in front of the frame (rounded up to the cache line)
     */
    public FramePool(int count, int maxFrame, int headroom) {
        if (count < 2 || maxFrame <= 0 || headroom < 0) {
            throw new IllegalArgumentException("count " + count + ", maxFrame " + maxFrame + ", headroom " + headroom);
        }
        this.headroom = align(headroom);
        this.frameCapacity = align(maxFrame);
        this.bufferSize = this.headroom + frameCapacity + align(FrameMeta.SIZE);
        this.arena = Arena.ofShared();
        this.memory = arena.allocate((long) bufferSize * count, PAGE);
        this.frames = new Frame[count];
        this.free = new MpmcVarHandleArrayQueue<>(count);
        for (int i = 0; i < count; i++) {
            frames[i] = new Frame(this, i, memory.asSlice((long) i * bufferSize, bufferSize));
            free.offer(frames[i]);
        }
    }

    public FramePool(int count, int maxFrame) {
        this(count, maxFrame, DEFAULT_HEADROOM);
    }

    public static int align(int n) {
        return (n + CACHE_LINE - 1) & -CACHE_LINE;
    }

    /** A free frame reset to an empty frame at the end of the headroom, or null when none is free. */
    public Frame acquire() {
        Frame f = free.poll();
        if (f != null) {
            f.reset();
        }
        return f;
    }

    /** Gives a frame back; any thread. */
    public void release(Frame f) {
        if (f.pool != this) {
            throw new IllegalArgumentException("frame of another pool");
        }
        // Capacity equals the frame count, so this cannot fail unless a frame is released twice.
        if (!free.offer(f)) {
            throw new IllegalStateException("frame released twice");
        }
    }

    public int available() {
        return free.size();
    }

    public int count() {
        return frames.length;
    }

    public int headroom() {
        return headroom;
    }

    public int frameCapacity() {
        return frameCapacity;
    }

    public int bufferSize() {
        return bufferSize;
    }

    @Override
    public void close() {
        arena.close();
    }

    /**
     * One pool buffer. The owner (whoever acquired it) reads and writes it; ownership passes with the
     * object through a queue, whose offer/poll give the needed happens-before.
     */
    public static final class Frame {
        private final FramePool pool;
        private final int index;
        private final MemorySegment buffer;
        private final long metaOffset;
        private final ByteBuffer view;

        Frame(FramePool pool, int index, MemorySegment buffer) {
            this.pool = pool;
            this.index = index;
            this.buffer = buffer;
            this.metaOffset = pool.headroom + pool.frameCapacity;
            this.view = buffer.asByteBuffer();
        }

        void reset() {
            buffer.asSlice(metaOffset, FrameMeta.SIZE).fill((byte) 0);
            FrameMeta.dataOffset(buffer, metaOffset, pool.headroom);
        }

        public int index() {
            return index;
        }

        /** The whole buffer: headroom, frame and tailroom. */
        public MemorySegment buffer() {
            return buffer;
        }

        /** A ByteBuffer over the whole buffer, created once (for channel writes by the owner). */
        public ByteBuffer byteView() {
            return view;
        }

        public long metaOffset() {
            return metaOffset;
        }

        public int dataOffset() {
            return FrameMeta.dataOffset(buffer, metaOffset);
        }

        public int dataLen() {
            return FrameMeta.dataLen(buffer, metaOffset);
        }

        /** Bytes that can be written at {@link #dataOffset()} before the tailroom. */
        public int room() {
            return (int) (metaOffset - dataOffset());
        }

        public void dataLen(int len) {
            if (len < 0 || len > room()) {
                throw new IndexOutOfBoundsException("frame length " + len + " > room " + room());
            }
            FrameMeta.dataLen(buffer, metaOffset, len);
        }

        /**
         * Moves the frame start {@code bytes} towards the buffer start so a header can be written in
         * front of the frame in place; returns the new data offset.
         */
        public int push(int bytes) {
            int off = dataOffset() - bytes;
            if (bytes < 0 || off < 0) {
                throw new IndexOutOfBoundsException("headroom exhausted: push " + bytes + " at " + dataOffset());
            }
            FrameMeta.dataOffset(buffer, metaOffset, off);
            FrameMeta.dataLen(buffer, metaOffset, dataLen() + bytes);
            return off;
        }

        public MemorySegment data() {
            return buffer.asSlice(dataOffset(), dataLen());
        }
    }
}
