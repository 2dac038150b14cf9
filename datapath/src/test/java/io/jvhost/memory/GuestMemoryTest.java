package io.jvhost.memory;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

class GuestMemoryTest {

    /** n regions of {@code size} bytes at gpa {@code base + i*stride}, user address {@code 0x7f00_0000_0000 + i*stride}. */
    static GuestMemory table(Arena arena, int n, long size, long base, long stride, List<MemorySegment> segsOut) {
        List<MemoryRegion> rs = new ArrayList<>();
        List<MemorySegment> segs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            rs.add(new MemoryRegion(base + i * stride, size, 0x7f00_0000_0000L + i * stride, 0, -1));
            segs.add(arena.allocate(size, 4096));
        }
        if (segsOut != null) {
            segsOut.addAll(segs);
        }
        return GuestMemory.ofSegments(rs, segs);
    }

    @Test
    void translatesInsideAndRejectsOutside() {
        try (Arena arena = Arena.ofConfined()) {
            List<MemorySegment> segs = new ArrayList<>();
            GuestMemory m = table(arena, 2, 0x10000, 0x100000, 0x100000, segs);
            long h0 = segs.get(0).address();
            long h1 = segs.get(1).address();
            assertEquals(h0, m.gpaToHost(0x100000, 1));
            assertEquals(h0 + 0xffff, m.gpaToHost(0x10ffff, 1));
            assertEquals(h0, m.gpaToHost(0x100000, 0x10000));
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(0x100000, 0x10001), "crosses the end");
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(0x110000, 1), "gap");
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(0xfffff, 1), "before");
            assertEquals(h1 + 5, m.gpaToHost(0x200005, 10));
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(0, 1));
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(-1L, 1));
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(0x100000, -1L), "2^64-1 bytes");
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(0x10fff0, 0xffff_ffff_ffff_fff0L), "wraps 64 bits");
            assertEquals(1, m.findGpa(0x200000));
            assertEquals(GuestMemory.NO_REGION, m.findGpa(0x300000));
            // user addresses
            assertEquals(h1 + 7, m.uvaToHost(0x7f00_0010_0007L, 8));
            assertEquals(GuestMemory.NO_ADDR, m.uvaToHost(0x7f00_0001_0000L, 1));
            assertNotNull(m.uvaToSegment(0x7f00_0000_0000L, 0x10000));
            assertNull(m.uvaToSegment(0x7f00_0000_0000L, 0x10001));
            assertEquals(0x40, m.gpaToSegment(0x100000, 0x40).byteSize());
        }
    }

    @Test
    void regionAtTopOfAddressSpace() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(4096);
            long gpa = -4096L; // last page below 2^64
            GuestMemory m = GuestMemory.ofSegments(List.of(new MemoryRegion(gpa, 4096, 0x1000, 0, -1)), List.of(seg));
            assertEquals(seg.address() + 4095, m.gpaToHost(-1L, 1));
            assertEquals(seg.address(), m.gpaToHost(gpa, 4096));
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(gpa, 4097));
            assertEquals(GuestMemory.NO_ADDR, m.gpaToHost(-1L, 2));
        }
    }

    @Test
    void rejectsBadTables() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(8192);
            MemorySegment b = arena.allocate(8192);
            assertThrows(IllegalArgumentException.class, () -> GuestMemory.ofSegments(
                    List.of(new MemoryRegion(0, 8192, 0, 0, -1), new MemoryRegion(4096, 8192, 0x10000, 0, -1)),
                    List.of(a, b)), "gpa overlap");
            assertThrows(IllegalArgumentException.class, () -> GuestMemory.ofSegments(
                    List.of(new MemoryRegion(0, 8192, 0, 0, -1), new MemoryRegion(0x10000, 8192, 4096, 0, -1)),
                    List.of(a, b)), "uva overlap");
            assertThrows(IllegalArgumentException.class, () -> new MemoryRegion(-4096, 8192, 0, 0, -1));
            assertThrows(IllegalArgumentException.class, () -> new MemoryRegion(0, 0, 0, 0, -1));
            assertThrows(IllegalArgumentException.class, () -> GuestMemory.ofSegments(
                    List.of(new MemoryRegion(0, 4096, 0, 0, -1)), List.of(a)), "size mismatch");
        }
    }

    @Test
    void fiveHundredNineRegionsMatchLinearSearch() {
        try (Arena arena = Arena.ofConfined()) {
            List<MemorySegment> segs = new ArrayList<>();
            GuestMemory m = table(arena, GuestMemory.MAX_REGIONS, 4096, 0x1000_0000L, 0x2000, segs);
            assertEquals(509, m.regionCount());
            Random rnd = new Random(42);
            for (int k = 0; k < 200_000; k++) {
                long gpa = 0x1000_0000L - 0x4000 + (rnd.nextLong() & 0x3ff_ffffL);
                long len = rnd.nextInt(64);
                long expect = GuestMemory.NO_ADDR;
                for (int i = 0; i < 509; i++) {
                    long first = 0x1000_0000L + i * 0x2000L;
                    if (gpa >= first && gpa < first + 4096 && (len == 0 || gpa + len <= first + 4096)) {
                        expect = segs.get(i).address() + (gpa - first);
                    }
                }
                assertEquals(expect, m.gpaToHost(gpa, len), () -> "gpa=0x" + Long.toHexString(gpa) + " len=" + len);
            }
            // too many
            List<MemoryRegion> rs = new ArrayList<>(m.regions());
            rs.add(new MemoryRegion(0, 4096, 0, 0, -1));
            List<MemorySegment> ss = new ArrayList<>();
            for (MemoryRegion r : m.regions()) {
                ss.add(segs.get((int) ((r.guestPhysAddr() - 0x1000_0000L) / 0x2000)));
            }
            ss.add(arena.allocate(4096));
            assertThrows(IllegalArgumentException.class, () -> GuestMemory.ofSegments(rs, ss));
        }
    }

    @Test
    void addRemoveRetireUnmapsOnlyWhatIsGone() {
        try (Arena arena = Arena.ofShared()) {
            AtomicInteger mapped = new AtomicInteger();
            List<MemorySegment> unmapped = new ArrayList<>();
            GuestMemory.Mapper mapper = new GuestMemory.Mapper() {
                @Override
                public MemorySegment map(MemoryRegion region) {
                    mapped.incrementAndGet();
                    return arena.allocate(region.size(), 4096);
                }

                @Override
                public void unmap(MemorySegment segment) {
                    unmapped.add(segment);
                }
            };
            GuestMemory t1 = GuestMemory.map(List.of(new MemoryRegion(0x0, 0x4000, 0x10000, 0, 3)), mapper);
            GuestMemory t2 = t1.withAdded(new MemoryRegion(0x100000, 0x4000, 0x20000, 0, 4), mapper);
            assertEquals(2, mapped.get());
            assertEquals(GuestMemory.NO_ADDR, t1.gpaToHost(0x100000, 1), "old table unchanged");
            long h = t2.gpaToHost(0x100000, 1);
            t1.retire(t2);
            assertEquals(0, unmapped.size(), "t2 still holds t1's mapping");
            GuestMemory t3 = t2.withRemoved(0x0, 0x4000);
            assertEquals(GuestMemory.NO_ADDR, t3.gpaToHost(0, 1));
            assertEquals(h, t3.gpaToHost(0x100000, 1));
            assertNotNull(t2.gpaToSegment(0, 16), "t2 still valid until retired");
            t2.retire(t3);
            assertEquals(1, unmapped.size());
            assertEquals(0x4000, unmapped.get(0).byteSize());
            t3.close();
            assertEquals(2, unmapped.size());
            assertThrows(IllegalArgumentException.class, () -> t3.withRemoved(0x0, 0x4000));
        }
    }
}
