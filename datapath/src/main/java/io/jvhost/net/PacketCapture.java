package io.jvhost.net;

import org.jctools.queues.varhandle.MpscBlockingConsumerVarHandleArrayQueue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code --capture}: copies frames into {@link FramePool} buffers on the worker and writes them to
 * a pcap file (nanosecond timestamps, Ethernet link type) from a separate thread.
 *
 * <p>Producers (any number of queue-pair workers) call {@link #captureIovecs}/{@link #capture}: one
 * copy of at most the snap length, no allocation, no lock; when the pool is empty the frame is not
 * captured and {@link #dropped()} grows (the traffic itself is never slowed down by capture). The
 * writer thread prepends the 16-byte pcap record header in the buffer's headroom, writes header and
 * frame with one channel write, and recycles the buffer. {@link #close()} must be called after the
 * producers stopped capturing; it drains what is queued and closes the file.
 */
public final class PacketCapture implements AutoCloseable {
    /** pcap magic for nanosecond timestamps. */
    public static final int MAGIC_NANOS = 0xa1b23c4d;
    public static final int VERSION_MAJOR = 2;
    public static final int VERSION_MINOR = 4;
    public static final int LINKTYPE_ETHERNET = 1;
    public static final int FILE_HEADER_SIZE = 24;
    public static final int RECORD_HEADER_SIZE = 16;
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long NANOS_PER_SECOND = 1_000_000_000L;

    private final FramePool pool;
    private final int snapLen;
    private final FileChannel channel;
    private final MpscBlockingConsumerVarHandleArrayQueue<FramePool.Frame> queue;
    private final Thread writer;
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong written = new AtomicLong();
    /** Wall clock at nanoTime 0: a timestamp is then one nanoTime() call, no allocation. */
    private final long epochOffsetNanos;
    private volatile boolean running = true;
    private volatile IOException failure;

    public PacketCapture(Path file, int snapLen, int poolFrames) throws IOException {
        this.snapLen = snapLen;
        this.pool = new FramePool(poolFrames, snapLen, FramePool.DEFAULT_HEADROOM);
        this.queue = new MpscBlockingConsumerVarHandleArrayQueue<>(poolFrames);
        this.epochOffsetNanos = System.currentTimeMillis() * 1_000_000L - System.nanoTime();
        this.channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING);
        ByteBuffer h = ByteBuffer.allocate(FILE_HEADER_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        h.putInt(MAGIC_NANOS).putShort((short) VERSION_MAJOR).putShort((short) VERSION_MINOR)
                .putInt(0).putInt(0).putInt(snapLen).putInt(LINKTYPE_ETHERNET).flip();
        while (h.hasRemaining()) {
            channel.write(h);
        }
        this.writer = Thread.ofPlatform().name("jvhost-capture").daemon().unstarted(this::writeLoop);
        writer.start();
    }

    /**
     * Captures the frame the iovecs describe after skipping {@code skip} bytes (the vnet header).
     *
     * @return false when no pool buffer was free (frame not captured)
     */
    public boolean captureIovecs(int queuePair, int direction, MemorySegment iovs, int iovcnt, long skip, long frameLen) {
        FramePool.Frame f = pool.acquire();
        if (f == null) {
            dropped.incrementAndGet();
            return false;
        }
        int len = (int) Math.min(frameLen, snapLen);
        int got = (int) NativeMemory.gather(iovs, iovcnt, skip, f.buffer(), f.dataOffset(), len);
        return enqueue(f, queuePair, direction, got, frameLen);
    }

    /** Captures {@code len} bytes of {@code src} from {@code off}. */
    public boolean capture(int queuePair, int direction, MemorySegment src, long off, long len) {
        FramePool.Frame f = pool.acquire();
        if (f == null) {
            dropped.incrementAndGet();
            return false;
        }
        int n = (int) Math.min(len, snapLen);
        MemorySegment.copy(src, off, f.buffer(), f.dataOffset(), n);
        return enqueue(f, queuePair, direction, n, len);
    }

    private boolean enqueue(FramePool.Frame f, int queuePair, int direction, int len, long origLen) {
        MemorySegment b = f.buffer();
        long m = f.metaOffset();
        f.dataLen(len);
        FrameMeta.origLen(b, m, (int) Math.min(origLen, Integer.MAX_VALUE));
        FrameMeta.timestamp(b, m, epochOffsetNanos + System.nanoTime());
        FrameMeta.queuePair(b, m, queuePair);
        FrameMeta.direction(b, m, direction);
        // The queue is as large as the pool, so a frame we hold always fits.
        queue.offer(f);
        return true;
    }

    private void writeLoop() {
        try {
            while (running || !queue.isEmpty()) {
                FramePool.Frame f = queue.poll(100, TimeUnit.MILLISECONDS);
                if (f != null) {
                    write(f);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (IOException e) {
            failure = e;
            running = false;
            // Keep recycling so producers only see "no buffer", never block.
            FramePool.Frame f;
            while ((f = queue.poll()) != null) {
                pool.release(f);
            }
        }
    }

    private void write(FramePool.Frame f) throws IOException {
        try {
            MemorySegment b = f.buffer();
            long m = f.metaOffset();
            int origLen = FrameMeta.origLen(b, m);
            long ts = FrameMeta.timestamp(b, m);
            int caplen = f.dataLen();
            int off = f.push(RECORD_HEADER_SIZE);
            b.set(LE32, off, (int) (ts / NANOS_PER_SECOND));
            b.set(LE32, off + 4L, (int) (ts % NANOS_PER_SECOND));
            b.set(LE32, off + 8L, caplen);
            b.set(LE32, off + 12L, origLen);
            ByteBuffer v = f.byteView();
            v.limit(off + RECORD_HEADER_SIZE + caplen).position(off);
            while (v.hasRemaining()) {
                channel.write(v);
            }
            v.clear();
            written.incrementAndGet();
        } finally {
            pool.release(f);
        }
    }

    /** Frames not captured because the pool was empty. */
    public long dropped() {
        return dropped.get();
    }

    /** Frames written to the file. */
    public long written() {
        return written.get();
    }

    @Override
    public void close() throws IOException {
        running = false;
        try {
            writer.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try {
            channel.force(false);
            channel.close();
        } finally {
            pool.close();
        }
        if (failure != null) {
            throw new UncheckedIOException("capture write failed", failure);
        }
    }
}
