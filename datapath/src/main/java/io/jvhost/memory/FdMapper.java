package io.jvhost.memory;

import io.jvhost.nativ.Errno;
import io.jvhost.nativ.Mman;
import io.jvhost.nativ.NativeException;
import java.lang.foreign.MemorySegment;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * Maps front-end memory regions from their fds (MAP_SHARED, read/write). The region's
 * {@code mmap_offset} need not be page aligned (the protocol does not promise it): the mapping starts
 * at the page (or, for hugetlbfs, the 2 MiB huge page) below it, and the segment handed out is the
 * slice the region describes. {@link #unmap} unmaps the whole mapping behind such a slice.
 *
 * <p>The fd stays open: its owner (the vhost-user session, the driver) closes it; the mapping keeps
 * the memory.
 *
 * <p>Threading: any thread (mapping and unmapping are control-path operations; the bookkeeping is
 * synchronised).
 */
public final class FdMapper implements GuestMemory.Mapper {
    private static final long PAGE = 4096;
    private static final long HUGE_PAGE = 2L << 20;

    /** Slice handed out → the whole mapping it lives in (only when they differ). */
    private final Map<MemorySegment, MemorySegment> whole = new IdentityHashMap<>();

    @Override
    public synchronized MemorySegment map(MemoryRegion region) {
        try {
            return map(region, PAGE);
        } catch (NativeException e) {
            if (e.errno() != Errno.EINVAL) {
                throw e;
            }
            // hugetlbfs wants offset and length in huge pages
            return map(region, HUGE_PAGE);
        }
    }

    private MemorySegment map(MemoryRegion region, long align) {
        long delta = region.mmapOffset() & (align - 1);
        long length = (region.size() + delta + align - 1) & -align;
        MemorySegment m = Mman.mmapShared(region.fd(), region.mmapOffset() - delta, length);
        if (delta == 0 && length == region.size()) {
            return m;
        }
        MemorySegment slice = m.asSlice(delta, region.size());
        whole.put(slice, m);
        return slice;
    }

    @Override
    public synchronized void unmap(MemorySegment segment) {
        MemorySegment m = whole.remove(segment);
        Mman.munmap(m != null ? m : segment);
    }
}
