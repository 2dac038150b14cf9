package io.jvhost.virtq;

import io.jvhost.memory.DirtyLog;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Event suppression on a packed ring, both directions: the device's area (disable, enable, and
 * with EVENT_IDX a descriptor-specific {@code off_wrap} at the next slot) and the driver's (no
 * call when disabled, one per publish when enabled, with EVENT_IDX a call exactly when the used
 * position crosses the driver's {@code off_wrap}, across a wrap); and the dirty log of the
 * device's writes (used descriptors, device area) by their own addresses.
 */
class PackedNotificationTest {
    private static final long EVENT_IDX = 1L << VirtioFeatures.RING_F_EVENT_IDX;

    private static void exchangeOne(PackedRing r, int id) {
        r.offer(id, r.dataGpa, 8, 0);
        assertEquals(DeviceQueue.CHAIN, r.next());
        r.q.pushUsed(id, 0);
        assertEquals(1, r.poll());
    }

    @Test
    void deviceAreaSaysDisableEnableOrTheNextSlot() {
        try (PackedRing r = new PackedRing(5, 0, 1, 8)) {
            r.q.disableNotification();
            assertEquals(PackedEvent.FLAG_DISABLE, PackedEvent.flagsAcquire(r.deviceEvent));
            assertFalse(r.q.enableNotification(), "nothing available");
            assertEquals(PackedEvent.FLAG_ENABLE, PackedEvent.flagsAcquire(r.deviceEvent));
            r.offer(0, r.dataGpa, 8, 0);
            assertTrue(r.q.enableNotification(), "a chain is available: process instead of sleeping");
        }
        try (PackedRing r = new PackedRing(5, EVENT_IDX, 1, 8)) {
            for (int i = 0; i < 7; i++) {
                exchangeOne(r, i % 5);
            }
            assertFalse(r.q.enableNotification());
            assertEquals(PackedEvent.FLAG_DESC, PackedEvent.flagsAcquire(r.deviceEvent));
            // 7 slots used on a ring of 5: next slot 2, driver wrap counter flipped to 0
            assertEquals(PackedEvent.offWrap(2, false), PackedEvent.offWrap(r.deviceEvent));
        }
    }

    @Test
    void driverAreaDisableAndEnable() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            PackedEvent.set(r.driverEvent, 0, PackedEvent.FLAG_DISABLE);
            exchangeOne(r, 0);
            assertFalse(r.q.needsCall());
            PackedEvent.set(r.driverEvent, 0, PackedEvent.FLAG_ENABLE);
            exchangeOne(r, 1);
            assertTrue(r.q.needsCall());
            assertFalse(r.q.needsCall(), "nothing published since");
        }
    }

    @Test
    void descriptorSpecificCallExactlyWhenOffWrapIsCrossed() {
        int size = 3;
        try (PackedRing r = new PackedRing(size, EVENT_IDX, 1, 8)) {
            exchangeOne(r, 0);
            r.q.needsCall(); // first decision: always a call
            // the driver wants a call once the used descriptor at slot 2 (wrap 1) is written
            PackedEvent.set(r.driverEvent, PackedEvent.offWrap(2, true), PackedEvent.FLAG_DESC);
            exchangeOne(r, 1); // used slot 1 -> position 2
            assertFalse(r.q.needsCall());
            exchangeOne(r, 2); // used slot 2 -> position 0, wrap 0
            assertTrue(r.q.needsCall());
            // across the wrap: event at slot 1 of wrap 0
            PackedEvent.set(r.driverEvent, PackedEvent.offWrap(1, false), PackedEvent.FLAG_DESC);
            exchangeOne(r, 0);
            assertFalse(r.q.needsCall(), "slot 0 used; slot 1 not yet");
            exchangeOne(r, 1);
            assertTrue(r.q.needsCall());
            // an event already passed (previous lap) does not call
            PackedEvent.set(r.driverEvent, PackedEvent.offWrap(0, true), PackedEvent.FLAG_DESC);
            exchangeOne(r, 2);
            assertFalse(r.q.needsCall());
        }
    }

    @Test
    void needEventAgreesWithACountOverEveryPosition() {
        for (int size : new int[]{1, 3, 8, 257}) {
            for (int old = 0; old < size; old++) {
                for (int step = 1; step <= size; step++) {
                    // positions in one lap: old .. old+step (exclusive of old), wrap of "now"
                    int nowLin = old + step;
                    int now = nowLin % size;
                    boolean nowWrap = (nowLin / size) % 2 == 0; // start lap wrap 1
                    for (int e = 0; e < size; e++) {
                        for (int ew = 0; ew < 2; ew++) {
                            // linear position of the event: the slot e in the lap with wrap ew nearest before now
                            boolean eventWrap = ew == 1;
                            int lapOfNow = nowLin / size;
                            int lap = ((lapOfNow % 2 == 0) == eventWrap) ? lapOfNow : lapOfNow - 1;
                            int eLin = lap * size + e;
                            boolean expected = eLin >= old && eLin < nowLin;
                            assertEquals(expected, PackedVirtqueue.needEvent(PackedEvent.offWrap(e, eventWrap), now,
                                    nowWrap, old, size), "size " + size + " old " + old + " step " + step + " e " + e
                                    + "/" + ew);
                        }
                    }
                }
            }
        }
    }

    @Test
    void usedDescriptorsAndTheDeviceAreaAreLoggedWhereTheyAre() {
        try (PackedRing r = new PackedRing(4, EVENT_IDX, 1, 8); Arena a = Arena.ofConfined()) {
            // one bit per 4 KiB page up to the end of the guest's RAM (at 4 GiB)
            long pages = (r.mem.gpaBase() + r.mem.size()) >>> DirtyLog.PAGE_SHIFT;
            DirtyLog log = DirtyLog.over(a.allocate(pages / 8, 8));
            r.q.setDirtyLog(log, true, 0x1234_0000L);
            r.offer(0, r.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            r.q.pushUsed(0, 0);
            assertTrue(log.isDirty(r.descGpa));
            if ((r.deviceGpa >>> DirtyLog.PAGE_SHIFT) != (r.descGpa >>> DirtyLog.PAGE_SHIFT)) {
                assertFalse(log.isDirty(r.deviceGpa), "device area not written yet");
            }
            r.q.enableNotification();
            assertTrue(log.isDirty(r.deviceGpa));
            assertEquals(0, log.outsideMarks());
        }
    }
}
