package io.jvhost.memory;

import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every logged write lands on the right bit: page boundaries, ranges across 64-page words, the
 * host → guest-physical translation across regions with gaps between them, and nothing ever
 * written outside the log.
 */
class DirtyLogTest {
    private static final long PAGE = DirtyLog.PAGE_SIZE;

    private static TreeSet<Long> dirtyPages(DirtyLog log) {
        TreeSet<Long> s = new TreeSet<>();
        for (long p = 0; p < log.pages(); p++) {
            if (log.isDirty(p * PAGE)) {
                s.add(p);
            }
        }
        return s;
    }

    private static TreeSet<Long> range(long first, long last) {
        TreeSet<Long> s = new TreeSet<>();
        for (long p = first; p <= last; p++) {
            s.add(p);
        }
        return s;
    }

    @ParameterizedTest(name = "gpa=0x{0} len={1} -> pages {2}..{3}")
    @CsvSource({
            "0, 1, 0, 0",
            "fff, 1, 0, 0",
            "fff, 2, 0, 1",           // one byte each side of a page boundary
            "1000, 1000, 1, 1",       // exactly one page
            "1000, 1001, 1, 2",
            "3f000, 2000, 63, 64",    // across a 64-page word
            "3f000, 1000, 63, 63",
            "0, 40000, 0, 63",        // one whole word
            "7ff, 10000, 0, 16",      // a 64 KiB frame at an odd address
            "123456, 300000, 291, 1059", // many words
    })
    void rangesMarkExactlyTheirPages(String gpaHex, String lenHex, long first, long last) {
        try (Arena a = Arena.ofConfined()) {
            DirtyLog log = DirtyLog.over(a.allocate(256, 8)); // 2048 pages
            log.mark(Long.parseLong(gpaHex, 16), Long.parseLong(lenHex, 16));
            assertEquals(range(first, last), dirtyPages(log));
            assertEquals(0, log.outsideMarks());
        }
    }

    @Test
    void bitLayoutIsTheSpecsBytePerEightPages() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment bits = a.allocate(64, 8);
            DirtyLog log = DirtyLog.over(bits);
            log.mark(11 * PAGE, 1); // page 11: byte 1, bit 3
            log.mark(70 * PAGE + 5, 1); // page 70: byte 8, bit 6
            assertEquals(1 << 3, bits.get(ValueLayout.JAVA_BYTE, 1));
            assertEquals(1 << 6, bits.get(ValueLayout.JAVA_BYTE, 8));
            for (int i = 0; i < 64; i++) {
                if (i != 1 && i != 8) {
                    assertEquals(0, bits.get(ValueLayout.JAVA_BYTE, i), "byte " + i);
                }
            }
            assertEquals(2, log.drain());
            assertEquals(0, log.drain());
        }
    }

    @Test
    void nothingIsWrittenOutsideTheLog() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment all = a.allocate(64, 8);
            DirtyLog log = DirtyLog.over(all.asSlice(0, 16)); // 128 pages
            assertEquals(128, log.pages());
            log.mark(127 * PAGE, 3 * PAGE); // the last page is inside, the rest is not
            log.mark(500 * PAGE, 1);
            log.mark(-PAGE, PAGE * 2); // wraps at 2^64
            assertEquals(new TreeSet<>(List.of(127L)), dirtyPages(log), "only the page inside the log");
            assertEquals(3, log.outsideMarks());
            for (int i = 16; i < 64; i++) {
                assertEquals(0, all.get(ValueLayout.JAVA_BYTE, i), "byte " + i + " beyond the log");
            }
            assertTrue(log.covers(0, 128 * PAGE));
            assertFalse(log.covers(0, 128 * PAGE + 1));
            assertFalse(log.covers(-8, 16), "wraps");
            assertFalse(log.covers(5, 0));
        }
    }

    @Test
    void aSizeNotAMultipleOfEightCoversItsWholeWords() {
        try (Arena a = Arena.ofConfined()) {
            DirtyLog log = DirtyLog.over(a.allocate(20, 8));
            assertEquals(128, log.pages());
            assertThrows(IllegalArgumentException.class, () -> DirtyLog.over(a.allocate(24, 8).asSlice(4)));
        }
    }

    /** Host addresses of iovec pieces go back to guest-physical through the region table, gaps included. */
    @Test
    void hostAddressesAreTranslatedPerRegionAcrossGaps() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r0 = a.allocate(3 * PAGE, PAGE);
            MemorySegment r1 = a.allocate(2 * PAGE, PAGE);
            MemorySegment r2 = a.allocate(4 * PAGE, PAGE);
            // guest-physical: [0x10000, 0x13000) [0x40000, 0x42000) [0x42000, 0x46000): a gap, then two adjacent regions
            GuestMemory m = GuestMemory.ofSegments(List.of(
                    new MemoryRegion(0x42000, r2.byteSize(), r2.address(), 0, -1),
                    new MemoryRegion(0x10000, r0.byteSize(), r0.address(), 0, -1),
                    new MemoryRegion(0x40000, r1.byteSize(), r1.address(), 0, -1)), List.of(r2, r0, r1));
            DirtyLog log = DirtyLog.over(a.allocate(16, 8)); // 128 pages = 512 KiB
            log.markHost(m, r0.address() + PAGE - 10, 20); // pages 0x10, 0x11
            log.markHost(m, r1.address() + 2 * PAGE - 1, 1); // last byte of r1: page 0x41
            log.markHost(m, r2.address(), 1); // first byte of r2: page 0x42
            log.markHost(m, r2.address() + 3 * PAGE + 100, 10); // page 0x45
            assertEquals(new TreeSet<>(List.of(0x10L, 0x11L, 0x41L, 0x42L, 0x45L)), dirtyPages(log));
            assertEquals(0, log.outsideMarks());
            log.markHost(m, r0.address() + 3 * PAGE, 1); // just past r0: not guest memory
            assertEquals(1, log.outsideMarks());
            assertEquals(5, dirtyPages(log).size(), "nothing marked for it");
            assertEquals(0x45fffL, m.highestGpa());
        }
    }

    /** A mapped log: bits land in the file at the log's offset; unmapping leaves the fd alone. */
    @Test
    void mapsAnFdAtAnOffset() {
        int fd = Mman.memfdCreate("dirty-log-test", Mman.MFD_ALLOW_SEALING);
        try {
            Mman.ftruncate(fd, 3 * PAGE);
            Fds.addSeals(fd, Fds.F_SEAL_SHRINK | Fds.F_SEAL_GROW);
            DirtyLog log = DirtyLog.map(fd, PAGE + 64, 128);
            assertEquals(1024, log.pages());
            log.mark(9 * PAGE, 1); // byte 1, bit 1 of the log
            log.close();
            MemorySegment file = Mman.mmapShared(fd, 0, 3 * PAGE);
            try {
                assertEquals(2, file.get(ValueLayout.JAVA_BYTE, PAGE + 64 + 1));
                long sum = 0;
                for (long i = 0; i < 3 * PAGE; i++) {
                    sum += file.get(ValueLayout.JAVA_BYTE, i);
                }
                assertEquals(2, sum, "nothing else in the file changed");
            } finally {
                Mman.munmap(file);
            }
            assertThrows(IllegalArgumentException.class, () -> DirtyLog.map(fd, 4, 64), "unaligned offset");
        } finally {
            Fds.close(fd);
        }
    }
}
