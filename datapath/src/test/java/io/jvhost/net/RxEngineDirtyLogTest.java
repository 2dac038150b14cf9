package io.jvhost.net;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.memory.DirtyLog;
import io.jvhost.nativ.Fds;
import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.Vring;
import io.jvhost.virtq.VringUsed;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RX frames written straight into guest buffers mark exactly the pages the bytes landed in:
 * frames inside one page, across page boundaries, across the boundary between two memory regions
 * (two iovecs for one buffer), a mergeable frame over two buffers, and a frame too large for the
 * guest's buffers (dropped, but its bytes were written); the used ring is marked at its log
 * address. With logging off nothing is marked.
 */
class RxEngineDirtyLogTest {
    private static final long GPA_BASE = 0x10_0000;
    private static final long RAM = 2 << 20; // two regions of 1 MiB: the boundary is at 0x20_0000
    private static final long REGION_BOUNDARY = GPA_BASE + RAM / 2;
    private static final int RING = 64;
    private static final int BUF = 1536;
    private static final int HDR = VirtioNetHdr.SIZE;
    private static final long PAGE = DirtyLog.PAGE_SIZE;

    private final Arena arena = Arena.ofConfined();
    private final DriverMemory dm = DriverMemory.allocate(RAM, GPA_BASE);
    private final DirtyLog log = DirtyLog.over(arena.allocate(128, 8)); // 1024 pages: 0 .. 4 MiB
    private final int[] sock = SeqPacketPair.open();
    private final QueueCounters counters = new QueueCounters();
    private DriverVirtqueue dq;
    private Vring vring;
    private RxEngine engine;
    private final long[] bufOfHead = new long[RING];

    @AfterEach
    void close() {
        Fds.closeQuietly(sock[0]);
        Fds.closeQuietly(sock[1]);
        dm.close();
        arena.close();
    }

    /** Posts {@code n} buffers of {@link #BUF} bytes, the second of them straddling the region boundary. */
    private void setUp(boolean logging, boolean guestGso) {
        Fds.setNonBlocking(sock[0], true);
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
        dq = new DriverVirtqueue(dm, RING, features, 0, 0);
        vring = new Vring("rx-log");
        SplitVirtqueue q = (SplitVirtqueue) vring.queue();
        q.setSize(RING);
        q.setFeatures(features);
        q.setMemory(dm.guestMemory(2));
        assertTrue(q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()),
                dm.userAddress(dq.usedGpa())));
        q.setBase(0);
        q.start();
        if (logging) {
            vring.setDirtyLog(log);
            q.setDirtyLog(log, true, dq.usedGpa()); // as a start with VHOST_VRING_F_LOG would
        }
        engine = new RxEngine(0, vring, arena, counters, new QueueLatency(), RING);
        engine.configure(sock[0], HDR, true, guestGso, 1500);
        post(dm.alloc(BUF, 64) + 100); // starts 100 bytes into an allocation: crosses a page at some point
        long at = dm.alloc(0, 1);
        dm.alloc(REGION_BOUNDARY - 700 - at, 1);
        post(dm.alloc(BUF, 1)); // 700 bytes in the first region, 836 in the second
        for (int i = 0; i < 20; i++) {
            post(dm.alloc(BUF + 200, 64));
        }
        dq.publish();
    }

    private void post(long gpa) {
        int head = dq.add(new long[] {gpa}, new int[] {BUF}, 0, 1, false);
        bufOfHead[head] = gpa;
    }

    private void send(int len) {
        MemorySegment f = arena.allocate(len);
        f.fill((byte) 0x5a);
        assertEquals(len, Fds.write(sock[1], f, len));
    }

    private TreeSet<Long> dirty() {
        TreeSet<Long> s = new TreeSet<>();
        for (long p = 0; p < log.pages(); p++) {
            if (log.isDirty(p * PAGE)) {
                s.add(p);
            }
        }
        return s;
    }

    private static void addPages(TreeSet<Long> s, long gpa, long len) {
        for (long p = gpa / PAGE; p <= (gpa + len - 1) / PAGE; p++) {
            s.add(p);
        }
    }

    private void processAll() {
        int rounds = 0;
        while (engine.process(64, System.nanoTime()) > 0 && rounds++ < 10) {
            // frames are queued: a few rounds take them all
        }
    }

    @Test
    void deliveredFramesMarkExactlyTheirPages() {
        setUp(true, true);
        // buffer 0: 72 bytes (100 bytes into an allocation); buffers 1+2: one 2000-byte frame (guest GSO
        // allows it; mergeable: two buffers, the first across the region boundary); buffers 3, 4: one
        // frame each
        int[] lens = {HDR + 60, 2000, HDR + 1514, HDR + 800};
        for (int l : lens) {
            send(l);
        }
        processAll();
        TreeSet<Long> want = new TreeSet<>();
        long u;
        int used = 0;
        while ((u = dq.pollUsed()) != -1) {
            int head = (int) (u >>> 32);
            int len = (int) u;
            addPages(want, bufOfHead[head], len);
            used++;
        }
        assertEquals(5, used, "one used entry per buffer: the 2000-byte frame took two");
        assertTrue(bufOfHead[1] < REGION_BOUNDARY && bufOfHead[1] + BUF > REGION_BOUNDARY);
        TreeSet<Long> ring = new TreeSet<>();
        addPages(ring, dq.usedGpa(), VringUsed.sizeOf(RING));
        TreeSet<Long> got = dirty();
        assertTrue(got.contains(ring.first()), "used.idx and the first elements");
        assertTrue(got.containsAll(want), "every page a frame was written into: " + want + " in " + got);
        TreeSet<Long> extra = new TreeSet<>(got);
        extra.removeAll(want);
        assertTrue(ring.containsAll(extra), "nothing else but the used ring: " + extra);
        assertTrue(want.contains((REGION_BOUNDARY - 1) / PAGE) && want.contains(REGION_BOUNDARY / PAGE),
                "both sides of the region boundary");
        assertEquals(0, log.outsideMarks());
        assertEquals(4, counters.get(Counter.RX_FRAMES));
    }

    @Test
    void aDroppedFrameStillMarksWhatItWrote() {
        setUp(true, false);
        send(HDR + 60);
        processAll();
        assertTrue(dq.pollUsed() != -1);
        log.drain();
        send(6000); // larger than the window of one 1536-byte buffer (MTU 1500): spills into the overflow, dropped
        processAll();
        assertEquals(1, counters.drops(DropReason.RX_TOO_BIG));
        assertEquals(-1, dq.pollUsed(), "nothing delivered");
        TreeSet<Long> want = new TreeSet<>();
        addPages(want, bufOfHead[1], BUF); // the window's buffer took the frame's first bytes
        assertEquals(want, dirty());
        assertEquals(0x5a, dm.at(bufOfHead[1] + 100, 1).get(ValueLayout.JAVA_BYTE, 0), "it was written");
    }

    @Test
    void withoutALogNothingIsMarked() {
        setUp(false, false);
        for (int l : new int[] {HDR + 60, HDR + 1514, 6000, HDR + 800}) {
            send(l);
        }
        processAll();
        assertEquals(3, counters.get(Counter.RX_FRAMES));
        assertEquals(new TreeSet<Long>(), dirty());
    }
}
