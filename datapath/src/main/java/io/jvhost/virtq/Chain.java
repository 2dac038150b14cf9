package io.jvhost.virtq;

import io.jvhost.nativ.Iovec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One descriptor chain taken from a virtqueue, as two preallocated native {@code struct iovec}
 * arrays pointing straight into guest memory: the device-readable pieces (a frame to transmit)
 * and the device-writable pieces (a buffer to receive into). The net engine passes
 * {@link #readable()} to {@code writev} and {@link #writable()} to {@code readv} unchanged.
 *
 * <p>{@code struct iovec} on x86-64 / aarch64 Linux: {@code void *iov_base} at 0,
 * {@code size_t iov_len} at 8, 16 bytes per entry, native byte order: written with
 * {@link Iovec}, the syscall layer's own accessor.
 *
 * <p>A buffer that spans two guest memory regions yields two iovec entries. Zero-length
 * descriptors yield none.
 *
 * <p>Threading: owned by one queue-pair worker; reused for every chain (no allocation).
 */
public final class Chain {
    /** {@code UIO_MAXIOV}: readv/writev take no more entries than this. */
    public static final int UIO_MAXIOV = Iovec.IOV_MAX;

    private final MemorySegment readable;
    private final MemorySegment writable;
    private final int capacity;

    int head = -1;
    int readableCount;
    int writableCount;
    long readableBytes;
    long writableBytes;
    /** Descriptors visited (direct + indirect entries, excluding the indirect pointer itself). */
    int descriptorCount;

    /**
     * @param arena    owns the iovec arrays
     * @param capacity iovec entries per direction (1..{@link #UIO_MAXIOV}); a longer chain breaks the queue
     */
    public Chain(Arena arena, int capacity) {
        if (capacity < 1 || capacity > UIO_MAXIOV) {
            throw new IllegalArgumentException("iovec capacity must be in [1, " + UIO_MAXIOV + "]: " + capacity);
        }
        this.capacity = capacity;
        this.readable = Iovec.allocate(arena, capacity);
        this.writable = Iovec.allocate(arena, capacity);
    }

    /** Iovec entries per direction. */
    public int capacity() {
        return capacity;
    }

    /** Head descriptor index: what {@link SplitVirtqueue#addUsed} takes back. -1 before the first chain. */
    public int head() {
        return head;
    }

    /** Native iovec array of the device-readable pieces; the first {@link #readableCount()} entries are valid. */
    public MemorySegment readable() {
        return readable;
    }

    /** Native iovec array of the device-writable pieces; the first {@link #writableCount()} entries are valid. */
    public MemorySegment writable() {
        return writable;
    }

    public int readableCount() {
        return readableCount;
    }

    public int writableCount() {
        return writableCount;
    }

    public long readableBytes() {
        return readableBytes;
    }

    public long writableBytes() {
        return writableBytes;
    }

    /** Descriptors the chain consisted of (not counting an indirect pointer descriptor). */
    public int descriptorCount() {
        return descriptorCount;
    }

    public long readableBase(int i) {
        return Iovec.base(readable, i);
    }

    public long readableLen(int i) {
        return Iovec.len(readable, i);
    }

    public long writableBase(int i) {
        return Iovec.base(writable, i);
    }

    public long writableLen(int i) {
        return Iovec.len(writable, i);
    }

    void reset() {
        head = -1;
        readableCount = 0;
        writableCount = 0;
        readableBytes = 0;
        writableBytes = 0;
        descriptorCount = 0;
    }

    /** Appends a readable piece; false when the array is full. */
    boolean addReadable(long base, long len) {
        int n = readableCount;
        if (n == capacity) {
            return false;
        }
        Iovec.set(readable, n, base, len);
        readableCount = n + 1;
        readableBytes += len;
        return true;
    }

    /** Appends a writable piece; false when the array is full. */
    boolean addWritable(long base, long len) {
        int n = writableCount;
        if (n == capacity) {
            return false;
        }
        Iovec.set(writable, n, base, len);
        writableCount = n + 1;
        writableBytes += len;
        return true;
    }

    @Override
    public String toString() {
        return "Chain[head=" + head + " r=" + readableCount + "/" + readableBytes + "B w=" + writableCount + "/"
                + writableBytes + "B]";
    }
}
