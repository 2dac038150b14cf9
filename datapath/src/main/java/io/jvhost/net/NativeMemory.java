package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Access to native memory by absolute address, for iovec bases that already passed guest-memory
 * translation and bounds checks (the virtqueue layer hands out only addresses inside mapped guest
 * regions). One unbounded segment avoids allocating a segment object per descriptor on the hot path.
 */
public final class NativeMemory {
    private NativeMemory() {
    }

    /** Everything: absolute addresses are offsets into this segment. */
    public static final MemorySegment ALL = everything();

    /** Size of {@code struct iovec} on LP64. */
    public static final int IOVEC_SIZE = 16;
    private static final long IOV_BASE_OFFSET = 0;
    private static final long IOV_LEN_OFFSET = 8;

    @SuppressWarnings("restricted")
    private static MemorySegment everything() {
        return MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    }

    public static long iovBase(MemorySegment iovs, int i) {
        return iovs.get(ValueLayout.JAVA_LONG, (long) i * IOVEC_SIZE + IOV_BASE_OFFSET);
    }

    public static long iovLen(MemorySegment iovs, int i) {
        return iovs.get(ValueLayout.JAVA_LONG, (long) i * IOVEC_SIZE + IOV_LEN_OFFSET);
    }

    public static void iovSet(MemorySegment iovs, int i, long base, long len) {
        iovs.set(ValueLayout.JAVA_LONG, (long) i * IOVEC_SIZE + IOV_BASE_OFFSET, base);
        iovs.set(ValueLayout.JAVA_LONG, (long) i * IOVEC_SIZE + IOV_LEN_OFFSET, len);
    }

    /** Total length of the first {@code n} iovecs. */
    public static long iovTotal(MemorySegment iovs, int n) {
        long t = 0;
        for (int i = 0; i < n; i++) {
            t += iovLen(iovs, i);
        }
        return t;
    }

    /**
     * Gathers up to {@code len} bytes starting {@code skip} bytes into the data the iovecs describe
     * into {@code dst} at {@code dstOff}.
     *
     * @return bytes copied (less than {@code len} when the iovecs end first)
     */
    public static long gather(MemorySegment iovs, int n, long skip, MemorySegment dst, long dstOff, long len) {
        long copied = 0;
        for (int i = 0; i < n && copied < len; i++) {
            long l = iovLen(iovs, i);
            if (skip >= l) {
                skip -= l;
                continue;
            }
            long chunk = Math.min(l - skip, len - copied);
            MemorySegment.copy(ALL, iovBase(iovs, i) + skip, dst, dstOff + copied, chunk);
            copied += chunk;
            skip = 0;
        }
        return copied;
    }

    /** Scatters {@code len} bytes from {@code src} into the iovecs, starting {@code skip} bytes in. */
    public static long scatter(MemorySegment src, long srcOff, MemorySegment iovs, int n, long skip, long len) {
        long copied = 0;
        for (int i = 0; i < n && copied < len; i++) {
            long l = iovLen(iovs, i);
            if (skip >= l) {
                skip -= l;
                continue;
            }
            long chunk = Math.min(l - skip, len - copied);
            MemorySegment.copy(src, srcOff + copied, ALL, iovBase(iovs, i) + skip, chunk);
            copied += chunk;
            skip = 0;
        }
        return copied;
    }
}
