package io.jvhost.memory;


import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.Collections;

/**
 * An immutable table of mapped guest memory regions, with hot-path translation of guest-physical
 * addresses (what descriptors carry) and front-end virtual addresses (what {@code SET_VRING_ADDR}
 * carries) to host addresses in this process.
 *
 * <h2>Contract</h2>
 * <ul>
 *   <li>Translation never throws and never allocates. Failure (address outside every region,
 *       range crossing a region's end, 64-bit overflow) returns {@link #NO_ADDR} /
 *       {@link #NO_REGION}; the caller decides what that means (for a virtqueue: the device is
 *       broken).</li>
 *   <li>Lookup is a binary search over regions sorted by start address, preceded by a check of the
 *       region that matched last time, so the cost is O(1) on a hit and O(log n) otherwise — it
 *       does not grow linearly with the 509 slots QEMU may use.</li>
 *   <li>A table never changes. {@link #withAdded}, {@link #withRemoved} and {@link #map} produce new
 *       tables that share the mappings that did not change. The control plane publishes the new
 *       table to the workers, waits for every worker to acknowledge it, and only then calls
 *       {@link #retire(GuestMemory)} on the old table, which unmaps the mappings the new table
 *       no longer holds. So no worker ever touches an unmapped page.</li>
 * </ul>
 *
 * <h2>Threading</h2>
 * Any number of threads may translate concurrently. The last-hit cache is a plain {@code int}
 * field written without synchronisation: a racy read sees some valid region index (ints are
 * written atomically and every index is re-verified before use), so the race is benign. It is
 * written only on a miss, so a worker with a steady working set does not dirty the cache line.
 * {@link #retire} and {@link #close} belong to the control thread.
 */
public final class GuestMemory implements AutoCloseable {

    /** Returned by the address translations on failure. Host address 0 is never mapped. */
    public static final long NO_ADDR = 0L;
    /** Returned by the region lookups on failure. */
    public static final int NO_REGION = -1;
    /** The number of memory slots QEMU may use with {@code VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS}. */
    public static final int MAX_REGIONS = 509;

    /** Maps and unmaps region file descriptors (the syscall layer, or a test double). */
    public interface Mapper {
        /** Maps {@code region} (MAP_SHARED, read/write); returns a segment of exactly {@code region.size()} bytes. */
        MemorySegment map(MemoryRegion region);

        /** Unmaps a segment returned by {@link #map}. */
        void unmap(MemorySegment segment);
    }

    /** A mapper for segments that are already mapped and owned by someone else: unmap does nothing. */
    public static final Mapper UNOWNED = new Mapper() {
        @Override
        public MemorySegment map(MemoryRegion region) {
            throw new UnsupportedOperationException("UNOWNED mapper cannot map " + region);
        }

        @Override
        public void unmap(MemorySegment segment) {
            // owned elsewhere (an Arena in tests, the in-process driver)
        }
    };

    /** One region with its mapping. Shared between successive tables while the region stays. */
    private record Mapping(MemoryRegion region, MemorySegment segment, Mapper mapper) {
    }

    private static final GuestMemory EMPTY = new GuestMemory(new Mapping[0]);

    private final Mapping[] mappings;      // sorted by guest physical address
    private final long[] gpaFirst;         // per mapping: first guest-physical byte
    private final long[] gpaLast;          // per mapping: last guest-physical byte (inclusive: no overflow at 2^64)
    private final long[] host;             // per mapping: host address of the first byte
    private final long[] uvaFirst;         // sorted by user address (own order)
    private final long[] uvaLast;
    private final long[] uvaHost;
    private final int[] uvaToMapping;

    // Benign-race caches, see class javadoc.
    private int lastGpaHit;
    private int lastUvaHit;

    private GuestMemory(Mapping[] unsorted) {
        Mapping[] m = unsorted.clone();
        Arrays.sort(m, Comparator.comparing((Mapping x) -> x.region().guestPhysAddr(), Long::compareUnsigned));
        int n = m.length;
        if (n > MAX_REGIONS) {
            throw new IllegalArgumentException("too many memory regions: " + n + " > " + MAX_REGIONS);
        }
        this.mappings = m;
        this.gpaFirst = new long[n];
        this.gpaLast = new long[n];
        this.host = new long[n];
        for (int i = 0; i < n; i++) {
            MemoryRegion r = m[i].region();
            if (m[i].segment().byteSize() != r.size()) {
                throw new IllegalArgumentException("segment size " + m[i].segment().byteSize()
                        + " does not match " + r);
            }
            gpaFirst[i] = r.guestPhysAddr();
            gpaLast[i] = r.guestPhysAddr() + r.size() - 1;
            host[i] = m[i].segment().address();
            if (host[i] == NO_ADDR) {
                throw new IllegalArgumentException("segment at host address 0: " + r);
            }
            if (i > 0 && Long.compareUnsigned(gpaFirst[i], gpaLast[i - 1]) <= 0) {
                throw new IllegalArgumentException("overlapping guest physical ranges: " + m[i - 1].region()
                        + " and " + r);
            }
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparing((Integer i) -> m[i].region().userAddr(), Long::compareUnsigned));
        this.uvaFirst = new long[n];
        this.uvaLast = new long[n];
        this.uvaHost = new long[n];
        this.uvaToMapping = new int[n];
        for (int k = 0; k < n; k++) {
            MemoryRegion r = m[order[k]].region();
            uvaFirst[k] = r.userAddr();
            uvaLast[k] = r.userAddr() + r.size() - 1;
            uvaHost[k] = host[order[k]];
            uvaToMapping[k] = order[k];
            if (k > 0 && Long.compareUnsigned(uvaFirst[k], uvaLast[k - 1]) <= 0) {
                throw new IllegalArgumentException("overlapping user address ranges: "
                        + m[order[k - 1]].region() + " and " + r);
            }
        }
    }

    /** The table with no regions: every translation fails. */
    public static GuestMemory empty() {
        return EMPTY;
    }

    /**
     * A table over segments that are already mapped (tests, the in-process driver). The segments
     * are not unmapped by {@link #close()}/{@link #retire}: their owner (usually an Arena) frees them.
     *
     * @param regions  the regions; {@code fd} is not used
     * @param segments one segment per region, same order, each exactly {@code size} bytes
     */
    public static GuestMemory ofSegments(List<MemoryRegion> regions, List<MemorySegment> segments) {
        if (regions.size() != segments.size()) {
            throw new IllegalArgumentException(regions.size() + " regions but " + segments.size() + " segments");
        }
        Mapping[] m = new Mapping[regions.size()];
        for (int i = 0; i < m.length; i++) {
            m[i] = new Mapping(Objects.requireNonNull(regions.get(i)), Objects.requireNonNull(segments.get(i)), UNOWNED);
        }
        return new GuestMemory(m);
    }

    /**
     * Maps every region with {@code mapper} and builds a table. If a mapping fails, the regions
     * mapped so far are unmapped again and the exception propagates.
     */
    public static GuestMemory map(List<MemoryRegion> regions, Mapper mapper) {
        List<Mapping> done = new ArrayList<>(regions.size());
        try {
            for (MemoryRegion r : regions) {
                done.add(new Mapping(r, mapper.map(r), mapper));
            }
            return new GuestMemory(done.toArray(new Mapping[0]));
        } catch (RuntimeException | Error e) {
            for (Mapping m : done) {
                try {
                    m.mapper().unmap(m.segment());
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    /** {@link #map(List, Mapper)} with a new {@link FdMapper}. */
    public static GuestMemory map(List<MemoryRegion> regions) {
        return map(regions, new FdMapper());
    }

    /**
     * A new table holding this table's regions plus {@code region}, mapped with {@code mapper}.
     * This table is unchanged.
     */
    public GuestMemory withAdded(MemoryRegion region, Mapper mapper) {
        MemorySegment seg = mapper.map(region);
        try {
            Mapping[] m = Arrays.copyOf(mappings, mappings.length + 1);
            m[m.length - 1] = new Mapping(region, seg, mapper);
            return new GuestMemory(m);
        } catch (RuntimeException e) {
            mapper.unmap(seg);
            throw e;
        }
    }

    /** As {@link #withAdded(MemoryRegion, Mapper)} for an already mapped, unowned segment. */
    public GuestMemory withAdded(MemoryRegion region, MemorySegment segment) {
        Mapping[] m = Arrays.copyOf(mappings, mappings.length + 1);
        m[m.length - 1] = new Mapping(region, segment, UNOWNED);
        return new GuestMemory(m);
    }

    /**
     * A new table without the region that starts at {@code guestPhysAddr} with {@code size}
     * ({@code REM_MEM_REG} matches on these). The mapping stays until {@link #retire} of this table.
     *
     * @throws IllegalArgumentException when no such region exists
     */
    public GuestMemory withRemoved(long guestPhysAddr, long size) {
        for (int i = 0; i < mappings.length; i++) {
            MemoryRegion r = mappings[i].region();
            if (r.guestPhysAddr() == guestPhysAddr && r.size() == size) {
                Mapping[] m = new Mapping[mappings.length - 1];
                System.arraycopy(mappings, 0, m, 0, i);
                System.arraycopy(mappings, i + 1, m, i, mappings.length - i - 1);
                return new GuestMemory(m);
            }
        }
        throw new IllegalArgumentException("no region at gpa=0x" + Long.toHexString(guestPhysAddr)
                + " size=0x" + Long.toHexString(size));
    }

    /**
     * Unmaps every mapping of this table that {@code successor} does not hold. Call only after
     * every worker acknowledged {@code successor}. {@code null} successor unmaps everything.
     */
    public void retire(GuestMemory successor) {
        Set<Mapping> keep = Collections.newSetFromMap(new IdentityHashMap<>());
        if (successor != null) {
            keep.addAll(Arrays.asList(successor.mappings));
        }
        RuntimeException first = null;
        for (Mapping m : mappings) {
            if (!keep.contains(m)) {
                try {
                    m.mapper().unmap(m.segment());
                } catch (RuntimeException e) {
                    if (first == null) {
                        first = e;
                    } else {
                        first.addSuppressed(e);
                    }
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /** Unmaps every mapping of this table ({@link #retire retire(null)}). */
    @Override
    public void close() {
        retire(null);
    }

    /** Number of regions. */
    public int regionCount() {
        return mappings.length;
    }

    /** The regions, sorted by guest physical address. */
    public List<MemoryRegion> regions() {
        List<MemoryRegion> out = new ArrayList<>(mappings.length);
        for (Mapping m : mappings) {
            out.add(m.region());
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------
    // Hot path: guest physical addresses

    /**
     * Index of the region holding guest-physical byte {@code gpa}, or {@link #NO_REGION}.
     * Never throws, never allocates.
     */
    public int findGpa(long gpa) {
        int hit = lastGpaHit;
        long[] first = gpaFirst;
        long[] last = gpaLast;
        if (hit < first.length
                && Long.compareUnsigned(gpa, first[hit]) >= 0 && Long.compareUnsigned(gpa, last[hit]) <= 0) {
            return hit;
        }
        int i = search(first, last, gpa);
        if (i >= 0) {
            lastGpaHit = i;
        }
        return i;
    }

    /**
     * Host address of {@code [gpa, gpa+len)} when that whole range lies inside one region, else
     * {@link #NO_ADDR} (outside every region, crossing a region's end, or {@code gpa+len}
     * overflowing 64 bits). {@code len} is unsigned; {@code len == 0} needs only {@code gpa} inside.
     */
    public long gpaToHost(long gpa, long len) {
        int i = findGpa(gpa);
        if (i < 0) {
            return NO_ADDR;
        }
        // room = bytes from gpa to the region's last byte, minus one (cannot overflow: gpa <= last)
        long roomMinusOne = gpaLast[i] - gpa;
        if (len != 0 && Long.compareUnsigned(len - 1, roomMinusOne) > 0) {
            return NO_ADDR;
        }
        return host[i] + (gpa - gpaFirst[i]);
    }

    /** First guest-physical byte of region {@code i} (from {@link #findGpa}). */
    public long regionGpaFirst(int i) {
        return gpaFirst[i];
    }

    /** Last (inclusive) guest-physical byte of region {@code i}. */
    public long regionGpaLast(int i) {
        return gpaLast[i];
    }

    /** Host address of the first byte of region {@code i}. */
    public long regionHostAddr(int i) {
        return host[i];
    }

    /** The mapped segment of region {@code i} (exactly the region's size). */
    public MemorySegment regionSegment(int i) {
        return mappings[i].segment();
    }

    /** The region {@code i} as received. */
    public MemoryRegion region(int i) {
        return mappings[i].region();
    }

    // ------------------------------------------------------------------------------------------
    // Front-end virtual addresses (ring addresses)

    /** Index (into the guest-physical order, as {@link #findGpa}) of the region holding user address {@code uva}, or {@link #NO_REGION}. */
    public int findUva(long uva) {
        int hit = lastUvaHit;
        long[] first = uvaFirst;
        long[] last = uvaLast;
        int k;
        if (hit < first.length
                && Long.compareUnsigned(uva, first[hit]) >= 0 && Long.compareUnsigned(uva, last[hit]) <= 0) {
            k = hit;
        } else {
            k = search(first, last, uva);
            if (k < 0) {
                return NO_REGION;
            }
            lastUvaHit = k;
        }
        return uvaToMapping[k];
    }

    /** As {@link #gpaToHost} for a front-end virtual address. */
    public long uvaToHost(long uva, long len) {
        int i = findUva(uva);
        if (i < 0) {
            return NO_ADDR;
        }
        long uFirst = mappings[i].region().userAddr();
        long roomMinusOne = (uFirst + (gpaLast[i] - gpaFirst[i])) - uva;
        if (len != 0 && Long.compareUnsigned(len - 1, roomMinusOne) > 0) {
            return NO_ADDR;
        }
        return host[i] + (uva - uFirst);
    }

    /**
     * Control path: a segment over {@code [uva, uva+len)} (used for ring addresses), or
     * {@code null} if the range is not inside one region. Allocates.
     */
    public MemorySegment uvaToSegment(long uva, long len) {
        int i = findUva(uva);
        if (i < 0 || uvaToHost(uva, len) == NO_ADDR) {
            return null;
        }
        return mappings[i].segment().asSlice(uva - mappings[i].region().userAddr(), len);
    }

    /** Control path: a segment over {@code [gpa, gpa+len)}, or {@code null} if not inside one region. Allocates. */
    public MemorySegment gpaToSegment(long gpa, long len) {
        int i = findGpa(gpa);
        if (i < 0 || gpaToHost(gpa, len) == NO_ADDR) {
            return null;
        }
        return mappings[i].segment().asSlice(gpa - gpaFirst[i], len);
    }

    /** Binary search for the range holding {@code a} among sorted, non-overlapping ranges. */
    private static int search(long[] first, long[] last, long a) {
        int lo = 0;
        int hi = first.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(a, first[mid]) < 0) {
                hi = mid - 1;
            } else if (Long.compareUnsigned(a, last[mid]) > 0) {
                lo = mid + 1;
            } else {
                return mid;
            }
        }
        return NO_REGION;
    }

    @Override
    public String toString() {
        return "GuestMemory" + regions();
    }
}
