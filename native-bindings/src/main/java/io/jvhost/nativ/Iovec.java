package io.jvhost.nativ;

import io.jvhost.nativ.gen.iovec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@code struct iovec { void *iov_base; size_t iov_len; }} arrays, as passed to
 * {@link Fds#readv}/{@link Fds#writev}. Host byte order (it is a kernel ABI struct, not a virtio one).
 *
 * <p>Accessors are plain (non-atomic) bounds-checked accesses: an iovec array belongs to one thread.
 */
public final class Iovec {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    /** {@code sizeof(struct iovec)} on LP64. */
    public static final long SIZE = iovec.sizeof();
    /** Offset of {@code iov_base}. */
    public static final long BASE_OFFSET = iovec.iov_base$offset();
    /** Offset of {@code iov_len}. */
    public static final long LEN_OFFSET = iovec.iov_len$offset();
    /** The kernel's limit on iovecs per call ({@code IOV_MAX}/{@code UIO_MAXIOV}). */
    public static final int IOV_MAX = 1024;

    private static final ValueLayout.OfLong WORD = ValueLayout.JAVA_LONG;

    private Iovec() {
    }

    /** A zeroed array of {@code n} iovecs, 8-byte aligned, owned by {@code arena}. */
    public static MemorySegment allocate(Arena arena, int n) {
        if (n < 0) {
            throw new IllegalArgumentException("negative iovec count " + n);
        }
        return arena.allocate(SIZE * n, 8);
    }

    /** Sets entry {@code i} to {@code [addr, addr + len)}; {@code addr} is a raw native address. */
    public static void set(MemorySegment iovs, int i, long addr, long len) {
        long off = SIZE * i;
        iovs.set(WORD, off + BASE_OFFSET, addr);
        iovs.set(WORD, off + LEN_OFFSET, len);
    }

    /** {@code iov_base} of entry {@code i}. */
    public static long base(MemorySegment iovs, int i) {
        return iovs.get(WORD, SIZE * i + BASE_OFFSET);
    }

    /** {@code iov_len} of entry {@code i}. */
    public static long len(MemorySegment iovs, int i) {
        return iovs.get(WORD, SIZE * i + LEN_OFFSET);
    }

    /** Throws unless {@code iovs} holds at least {@code iovcnt} entries. */
    static void check(MemorySegment iovs, int iovcnt) {
        if (iovcnt < 0 || SIZE * iovcnt > iovs.byteSize()) {
            throw new IndexOutOfBoundsException("iovcnt " + iovcnt + " exceeds iovec array of "
                    + iovs.byteSize() + " bytes");
        }
    }
}
