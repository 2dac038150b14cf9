package io.jvhost.memory;

import io.jvhost.nativ.Mman;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The front-end's dirty-page log during live migration (vhost-user.rst, "Migration"): one bit per
 * 4 KiB page of guest-physical memory, page {@code p} at bit {@code p % 8} of byte {@code p / 8},
 * counted from address 0. The device sets the bit of every page it writes, after the write and
 * before the guest can see it; the front-end (QEMU) clears words as it syncs them, concurrently,
 * so every update is an atomic OR.
 *
 * <h2>Layout and atomics</h2>
 * The bitmap is used as an array of aligned 64-bit words in native (little-endian) order: word
 * {@code p / 64}, bit {@code p % 64} is the same bit as byte {@code p / 8}, bit {@code p % 8}. A
 * range of pages costs one {@code getAndBitwiseOr} per word it touches (one for anything up to 64
 * pages that does not cross a word). The log's start must therefore be 8-byte aligned in its file
 * (QEMU's is at offset 0; the session refuses other offsets); a size that is not a multiple of 8
 * covers only its whole words.
 *
 * <h2>Never a write outside, never a crash</h2>
 * {@link #mark} touches only pages below {@link #pages()}; a mark beyond the log is dropped and
 * counted ({@link #outsideMarks()}; the session keeps the log covering guest memory and every
 * logged ring, so this needs a front-end that broke that promise). The atomic OR is a VarHandle
 * atomic access, which JDK 25 does not survive if it faults (SIGBUS in the signal handler aborts
 * the JVM; docs/VHOST-USER.md): so a log is only ever mapped from a file that cannot shrink
 * ({@code F_SEAL_SHRINK}, checked by the session before {@link #map}), whose size was checked.
 *
 * <h2>Threading</h2>
 * {@link #mark} and {@link #markHost} from any number of workers at once (lock-free, no
 * allocation). {@link #close()} on the control thread, once no worker uses the log any more.
 */
public final class DirtyLog implements AutoCloseable {
    /** {@code VHOST_LOG_PAGE}: the granule of the log. */
    public static final int PAGE_SHIFT = 12;
    public static final long PAGE_SIZE = 1L << PAGE_SHIFT;
    /** Pages per bitmap word. */
    private static final int WORD_SHIFT = 6;
    private static final long WORD_BYTES = Long.BYTES;

    /** Aligned 64-bit word, native order (the bitmap's byte order on little-endian hosts). */
    private static final VarHandle WORD = ValueLayout.JAVA_LONG.varHandle();

    private final MemorySegment words;
    private final long pages;
    /** The whole mapping to unmap at {@link #close()}, or null when the memory is not ours. */
    private final MemorySegment mapping;
    private final AtomicLong outside = new AtomicLong();

    private DirtyLog(MemorySegment words, MemorySegment mapping) {
        long usable = words.byteSize() & -WORD_BYTES;
        if (words.address() % WORD_BYTES != 0) {
            throw new IllegalArgumentException("log at 0x" + Long.toHexString(words.address()) + " is not 8-byte aligned");
        }
        this.words = words.asSlice(0, usable);
        this.pages = usable * Byte.SIZE;
        this.mapping = mapping;
    }

    /**
     * Maps {@code size} bytes of {@code fd} at {@code offset} (read/write, shared). The caller has
     * checked that the file holds them and cannot shrink; {@code offset} must be 8-byte aligned.
     * The fd stays the caller's.
     */
    public static DirtyLog map(int fd, long offset, long size) {
        if (offset < 0 || size <= 0 || offset + size < offset || offset % WORD_BYTES != 0) {
            throw new IllegalArgumentException("log offset " + offset + " size " + size);
        }
        long below = offset & (PAGE_SIZE - 1);
        long length = (size + below + PAGE_SIZE - 1) & -PAGE_SIZE;
        MemorySegment m = Mman.mmapShared(fd, offset - below, length);
        try {
            return new DirtyLog(m.asSlice(below, size), m);
        } catch (RuntimeException e) {
            Mman.munmap(m);
            throw e;
        }
    }

    /** A log over memory someone else owns and frees (tests, the Java front-end). */
    public static DirtyLog over(MemorySegment bitmap) {
        return new DirtyLog(bitmap, null);
    }

    /** Pages the log covers: guest-physical {@code [0, pages() * 4096)}. */
    public long pages() {
        return pages;
    }

    /** Whether every page of {@code [gpa, gpa + len)} ({@code len} &gt; 0, no 64-bit wrap) has a bit. */
    public boolean covers(long gpa, long len) {
        if (len <= 0) {
            return false;
        }
        long last = gpa + len - 1;
        if (Long.compareUnsigned(last, gpa) < 0) {
            return false; // wraps
        }
        return Long.compareUnsigned(last >>> PAGE_SHIFT, pages) < 0;
    }

    /**
     * Sets the bits of every page {@code [gpa, gpa + len)} touches. Pages beyond the log are not
     * written (counted instead). Hot path: no allocation, no lock, no throw.
     */
    public void mark(long gpa, long len) {
        if (len <= 0) {
            return;
        }
        long first = gpa >>> PAGE_SHIFT;
        long end = gpa + len - 1;
        long last = Long.compareUnsigned(end, gpa) < 0 ? -1L >>> PAGE_SHIFT : end >>> PAGE_SHIFT;
        if (Long.compareUnsigned(last, pages) >= 0) {
            outside.incrementAndGet();
            if (Long.compareUnsigned(first, pages) >= 0) {
                return;
            }
            last = pages - 1;
        }
        long w = first >>> WORD_SHIFT;
        long lastWord = last >>> WORD_SHIFT;
        long mask = -1L << (first & 63);
        while (w < lastWord) {
            or(w, mask);
            mask = -1L;
            w++;
        }
        or(w, mask & (-1L >>> (63 - (last & 63))));
    }

    private void or(long word, long mask) {
        // atomic: QEMU clears words (xchg) and other workers set bits concurrently
        long unused = (long) WORD.getAndBitwiseOr(words, word << 3, mask);
    }

    /**
     * {@link #mark} for bytes written at host address {@code hostAddr} inside a region of
     * {@code memory} (what an iovec points to). The range must lie inside one region, as every
     * iovec piece does; a host address outside {@code memory} is counted and not logged.
     */
    public void markHost(GuestMemory memory, long hostAddr, long len) {
        int r = memory.findHost(hostAddr);
        if (r < 0) {
            outside.incrementAndGet();
            return;
        }
        mark(memory.regionGpaFirst(r) + (hostAddr - memory.regionHostAddr(r)), len);
    }

    /** Whether the bit of the page holding {@code gpa} is set (tests, the front-end side). */
    public boolean isDirty(long gpa) {
        long p = gpa >>> PAGE_SHIFT;
        if (Long.compareUnsigned(p, pages) >= 0) {
            return false;
        }
        long v = (long) WORD.getVolatile(words, (p >>> WORD_SHIFT) << 3);
        return (v & (1L << (p & 63))) != 0;
    }

    /** Clears every bit and returns how many were set (the front-end side: a sync round). */
    public long drain() {
        long n = 0;
        for (long off = 0; off < words.byteSize(); off += WORD_BYTES) {
            n += Long.bitCount((long) WORD.getAndSet(words, off, 0L));
        }
        return n;
    }

    /** Marks that fell outside the log (or outside guest memory for {@link #markHost}). Any thread. */
    public long outsideMarks() {
        return outside.get();
    }

    /** Unmaps the log when this object mapped it. Only after every worker stopped using it. */
    @Override
    public void close() {
        if (mapping != null) {
            Mman.munmap(mapping);
        }
    }

    @Override
    public String toString() {
        return "DirtyLog[" + pages + " pages, " + (pages << PAGE_SHIFT >>> 20) + " MiB]";
    }
}
