package io.jvhost.virtq;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.memory.DirtyLog;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * VHOST_VRING_F_LOG on a split ring: every write the device makes to the used ring (elements,
 * {@code used.idx}, {@code used.flags}, {@code avail_event}) marks its page at the ring's log
 * address, including a batch that wraps around the end of a ring spanning three pages; without
 * the ring's log flag nothing is marked.
 */
class UsedRingLogTest {
    private static final long GPA_BASE = 0x10_0000;
    private static final int SIZE = 1024; // used ring: 4 + 8 * 1024 + 2 bytes, three pages
    private static final long PAGE = DirtyLog.PAGE_SIZE;

    private final Arena arena = Arena.ofConfined();
    private final DriverMemory mem = DriverMemory.allocate(4 << 20, GPA_BASE);
    /** Covers guest-physical 0 .. 32 MiB. */
    private final DirtyLog log = DirtyLog.over(arena.allocate(1024, 8));
    private DriverVirtqueue dq;
    private SplitVirtqueue q;
    private long buf;

    @AfterEach
    void close() {
        mem.close();
        arena.close();
    }

    private void start(long features) {
        dq = new DriverVirtqueue(mem, SIZE, features, 0, 0);
        q = new SplitVirtqueue("used-log");
        q.setSize(SIZE);
        q.setFeatures(features);
        q.setMemory(mem.guestMemory(1));
        assertTrue(q.setAddresses(mem.userAddress(dq.descGpa()), mem.userAddress(dq.availGpa()),
                mem.userAddress(dq.usedGpa())));
        q.setBase(0);
        q.start();
        buf = mem.alloc(64, 64);
    }

    /** Posts {@code n} one-buffer chains, takes them and completes them in one batch. */
    private void batch(int n) {
        for (int i = 0; i < n; i++) {
            assertTrue(dq.add(new long[] {buf}, new int[] {64}, 1, 0, false) >= 0);
        }
        dq.publish();
        Chain c = new Chain(arena, 4);
        for (int i = 0; i < n; i++) {
            assertEquals(DeviceQueue.CHAIN, q.next(c));
            q.addUsed(c.head(), 0);
        }
        q.publishUsed();
        for (int i = 0; i < n; i++) {
            assertTrue(dq.pollUsed() != -1);
        }
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

    @Test
    void usedElementsAndIndexAreMarkedAtTheLogAddressAcrossTheWrap() {
        start(0);
        long used = dq.usedGpa();
        assertEquals(0, used % PAGE, "the driver puts the used ring on a page boundary");
        batch(SIZE - 3); // not logged: used.idx at 1021
        assertEquals(new TreeSet<Long>(), dirty());

        q.setDirtyLog(log, true, used);
        batch(8); // slots 1021..1023 and 0..4
        TreeSet<Long> want = new TreeSet<>();
        for (int s : new int[] {1021, 1022, 1023, 0, 1, 2, 3, 4}) {
            addPages(want, used + VringUsed.elemOffset(s), VringUsed.ELEMENT_SIZE);
        }
        addPages(want, used + VringUsed.IDX_OFFSET, 2);
        assertEquals(want, dirty(), "pages of the wrapped batch and of used.idx");
        assertEquals(3, want.size(), "slot 1023 straddles the second and third page");
        assertEquals(0, log.outsideMarks());
    }

    @Test
    void notificationFlagsAndAvailEventAreMarked() {
        start(0);
        long used = dq.usedGpa();
        q.setDirtyLog(log, true, used);
        q.disableNotification(); // used.flags
        q.enableNotification();
        TreeSet<Long> want = new TreeSet<>();
        addPages(want, used + VringUsed.FLAGS_OFFSET, 2);
        assertEquals(want, dirty());
        log.drain();

        start(VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX));
        used = dq.usedGpa();
        q.setDirtyLog(log, true, used);
        q.enableNotification(); // avail_event, after the last element
        want.clear();
        addPages(want, used + VringUsed.availEventOffset(SIZE), 2);
        assertEquals(want, dirty());
        assertEquals(2, (VringUsed.availEventOffset(SIZE) + used) / PAGE - used / PAGE, "on the ring's third page");
    }

    /** The spec logs the ring at log_guest_addr, which need not be where the ring is (nor in guest memory). */
    @Test
    void theLogAddressIsUsedNotTheRingsOwn() {
        start(0);
        long logAt = 0x180_0000; // 24 MiB: inside the log, past the driver's RAM [1 MiB, 5 MiB)
        q.setDirtyLog(log, true, logAt);
        batch(1);
        TreeSet<Long> want = new TreeSet<>();
        addPages(want, logAt, VringUsed.elemOffset(1));
        assertEquals(want, dirty());
    }

    @Test
    void withoutTheRingsLogFlagNothingIsMarked() {
        start(VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX));
        q.setDirtyLog(log, false, dq.usedGpa());
        batch(5);
        q.enableNotification();
        q.setDirtyLog(null, true, dq.usedGpa());
        batch(5);
        assertEquals(new TreeSet<Long>(), dirty());
    }
}
