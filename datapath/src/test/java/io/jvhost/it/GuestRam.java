package io.jvhost.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * A QEMU guest's RAM read from outside: the {@code memory-backend-memfd} that tools/guest-vm gives
 * QEMU, opened through {@code /proc/<pid>/fd} (root). After a live migration with the destination
 * held paused ({@code -S}) and the source stopped (its vhost-user back-end stopped its rings before
 * QEMU's final copy), source and destination RAM must be identical: a page the back-end wrote but
 * did not mark in the dirty log keeps, at the destination, what it held when QEMU last copied it.
 * Comparing the two is the exact test of dirty logging, whatever the guest's traffic made of it
 * (TCP, for one, retransmits a frame that arrived stale and hides the fault).
 */
public final class GuestRam {
    private static final String BACKEND = "memfd:memory-backend-memfd";
    static final long PAGE = 4096;
    private static final long CHUNK = 1 << 20;

    private GuestRam() {
    }

    /** The path through which QEMU {@code pid}'s guest RAM memfd can be opened. */
    static Path memfd(long pid) {
        try (Stream<Path> fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
            for (Path fd : (Iterable<Path>) fds::iterator) {
                try {
                    if (Files.readSymbolicLink(fd).toString().contains(BACKEND)) {
                        return fd;
                    }
                } catch (IOException gone) {
                    // closed meanwhile
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("listing the fds of QEMU " + pid, e);
        }
        throw new AssertionError("QEMU " + pid + " has no " + BACKEND + " fd");
    }

    /**
     * Guest-physical offsets (memfd offsets; guest RAM below 4 GiB sits at the same offsets) of
     * the 4 KiB pages that differ between the RAM of QEMU {@code a} and QEMU {@code b}.
     */
    public static List<Long> differingPages(long a, long b) {
        try (Arena arena = Arena.ofConfined();
             FileChannel ca = FileChannel.open(memfd(a), StandardOpenOption.READ);
             FileChannel cb = FileChannel.open(memfd(b), StandardOpenOption.READ)) {
            long size = ca.size();
            if (cb.size() != size) {
                throw new AssertionError("guest RAM sizes differ: " + size + " and " + cb.size());
            }
            MemorySegment ma = ca.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            MemorySegment mb = cb.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            List<Long> out = new ArrayList<>();
            for (long off = 0; off < size; off += CHUNK) {
                long len = Math.min(CHUNK, size - off);
                if (MemorySegment.mismatch(ma, off, off + len, mb, off, off + len) < 0) {
                    continue;
                }
                for (long p = off; p < off + len; p += PAGE) {
                    if (MemorySegment.mismatch(ma, p, p + PAGE, mb, p, p + PAGE) >= 0) {
                        out.add(p);
                    }
                }
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
