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

    /** Bytes of the virtio-net header in front of every frame the device writes into an RX buffer (MRG_RXBUF / VERSION_1). */
    private static final int VNET_HDR = 12;
    private static final int NUM_BUFFERS_OFFSET = 10;
    private static final int ETH_HLEN = 14;
    private static final int ETHERTYPE_OFFSET = 12;
    /** Where Linux's "big packets" put the frame in the page that starts with its virtio-net header. */
    private static final int BIG_PACKET_DATA = 32;

    /**
     * One page that differs: its offset, how many of its bytes differ, and how many frames for the
     * guest start in the differing part on the source side.
     */
    public record PageDiff(long page, int bytes, int framesToGuest) {
        /**
         * Whether the source holds, where the pages differ, a frame the device wrote: an Ethernet
         * header addressed to the guest's MAC (IPv4 or ARP) right after a virtio-net header (flags ≤ 3,
         * num_buffers 1..64), or at offset 32 of a page that starts with one (Linux without
         * MRG_RXBUF: the header buffer at the page start, the frame buffer behind it). The guest's
         * own TX frames are addressed to the host; the guest kernel's copies of received headers
         * (an skb head: the frame at offset 64 of a fresh buffer, no virtio-net header in front)
         * do not match — QEMU 7.2 under TCG was seen to lose such guest writes in a migration.
         */
        public boolean stale() {
            return framesToGuest > 0;
        }

        @Override
        public String toString() {
            return "0x" + Long.toHexString(page) + "(" + bytes + " B" + (framesToGuest > 0 ? ", " + framesToGuest
                    + " frame(s) to the guest" : "") + ")";
        }
    }

    /** {@link #differingPages} with, for each page, how much differs and whether a device-written frame does. */
    public static List<PageDiff> differences(long a, long b, byte[] guestMac) {
        List<Long> pages = differingPages(a, b);
        List<PageDiff> out = new ArrayList<>();
        if (pages.isEmpty()) {
            return out;
        }
        try (Arena arena = Arena.ofConfined();
             FileChannel ca = FileChannel.open(memfd(a), StandardOpenOption.READ);
             FileChannel cb = FileChannel.open(memfd(b), StandardOpenOption.READ)) {
            MemorySegment ma = ca.map(FileChannel.MapMode.READ_ONLY, 0, ca.size(), arena);
            MemorySegment mb = cb.map(FileChannel.MapMode.READ_ONLY, 0, cb.size(), arena);
            byte[] src = new byte[(int) PAGE];
            byte[] dst = new byte[(int) PAGE];
            for (long p : pages) {
                MemorySegment.copy(ma, java.lang.foreign.ValueLayout.JAVA_BYTE, p, src, 0, src.length);
                MemorySegment.copy(mb, java.lang.foreign.ValueLayout.JAVA_BYTE, p, dst, 0, dst.length);
                int n = 0;
                for (int o = 0; o < PAGE; o++) {
                    n += src[o] != dst[o] ? 1 : 0;
                }
                int frames = 0;
                for (int o = 0; o + ETH_HLEN <= PAGE; o++) {
                    boolean withHeader = o + VNET_HDR + ETH_HLEN <= PAGE && headerAt(src, o) && ethernetAt(src, o + VNET_HDR, guestMac);
                    // without MRG_RXBUF Linux posts "big packets": the header in a buffer of its own at
                    // the start of a page, the frame in a second buffer of the same page from offset 32
                    // (sizeof(struct padded_vnet_hdr))
                    boolean bigPacket = o == BIG_PACKET_DATA && headerAt(src, 0) && ethernetAt(src, o, guestMac);
                    if ((withHeader || bigPacket) && differsNear(src, dst, o, VNET_HDR + 64)) {
                        frames++;
                        o += ETH_HLEN;
                    }
                }
                out.add(new PageDiff(p, n, frames));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }

    private static boolean headerAt(byte[] b, int o) {
        if ((b[o] & 0xff) > 3) {
            return false;
        }
        int numBuffers = (b[o + NUM_BUFFERS_OFFSET] & 0xff) | (b[o + NUM_BUFFERS_OFFSET + 1] & 0xff) << 8;
        return numBuffers >= 1 && numBuffers <= 64;
    }

    /** An Ethernet header addressed to {@code mac} carrying IPv4 or ARP. */
    private static boolean ethernetAt(byte[] b, int o, byte[] mac) {
        for (int i = 0; i < mac.length; i++) {
            if (b[o + i] != mac[i]) {
                return false;
            }
        }
        return b[o + ETHERTYPE_OFFSET] == 0x08 && (b[o + ETHERTYPE_OFFSET + 1] == 0x00 || b[o + ETHERTYPE_OFFSET + 1] == 0x06);
    }

    private static boolean differsNear(byte[] a, byte[] b, int from, int len) {
        for (int i = from; i < Math.min(a.length, from + len); i++) {
            if (a[i] != b[i]) {
                return true;
            }
        }
        return false;
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
     * For failure messages: per page, how many bytes differ between QEMU {@code a}'s and {@code b}'s
     * RAM, where the first and last difference are, and the first bytes there on both sides.
     */
    public static String describe(long a, long b, List<Long> pages, int max) {
        StringBuilder out = new StringBuilder();
        try (Arena arena = Arena.ofConfined();
             FileChannel ca = FileChannel.open(memfd(a), StandardOpenOption.READ);
             FileChannel cb = FileChannel.open(memfd(b), StandardOpenOption.READ)) {
            MemorySegment ma = ca.map(FileChannel.MapMode.READ_ONLY, 0, ca.size(), arena);
            MemorySegment mb = cb.map(FileChannel.MapMode.READ_ONLY, 0, cb.size(), arena);
            for (int i = 0; i < Math.min(max, pages.size()); i++) {
                long p = pages.get(i);
                int n = 0;
                long first = -1;
                long last = -1;
                for (long o = 0; o < PAGE; o++) {
                    if (ma.get(java.lang.foreign.ValueLayout.JAVA_BYTE, p + o) != mb.get(java.lang.foreign.ValueLayout.JAVA_BYTE, p + o)) {
                        n++;
                        last = o;
                        if (first < 0) {
                            first = o;
                        }
                    }
                }
                out.append(String.format("  page 0x%x: %d bytes differ in [0x%x, 0x%x]; source %s… destination %s…%n", p, n,
                        first, last, hex(ma, p + first, 16), hex(mb, p + first, 16)));
            }
        } catch (IOException e) {
            out.append("  (").append(e).append(")\n");
        }
        return out.toString();
    }

    private static String hex(MemorySegment m, long at, int n) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < n && at + i < m.byteSize(); i++) {
            b.append(String.format("%02x", m.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + i)));
        }
        return b.toString();
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
