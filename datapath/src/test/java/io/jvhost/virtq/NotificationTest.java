package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class NotificationTest {
    static final long EVENT_IDX = 1L << VirtioFeatures.RING_F_EVENT_IDX;

    @Test
    void needEventWrapsAround() {
        assertTrue(VringUsed.needEvent(0, 1, 0));
        assertFalse(VringUsed.needEvent(1, 1, 0));
        assertTrue(VringUsed.needEvent(5, 10, 0));
        assertFalse(VringUsed.needEvent(10, 10, 0));
        // across 65535 -> 0
        assertTrue(VringUsed.needEvent(65535, 2, 65534));
        assertTrue(VringUsed.needEvent(0, 2, 65534));
        assertTrue(VringUsed.needEvent(1, 2, 65534));
        assertFalse(VringUsed.needEvent(2, 2, 65534));
        assertFalse(VringUsed.needEvent(65533, 2, 65534));
        // no movement: never
        assertFalse(VringUsed.needEvent(7, 7, 7));
    }

    /** A device and driver on one thread, sharing a ring. */
    static final class Pair implements AutoCloseable {
        final DriverMemory dm = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
        final DriverVirtqueue dq;
        final SplitVirtqueue q = new SplitVirtqueue("pair");
        final Chain c = new Chain(Arena.ofAuto(), 8);
        final long buf;
        final long[] a = new long[1];
        final int[] l = new int[1];

        Pair(int size, long features, int start) {
            dq = new DriverVirtqueue(dm, size, features, 4, start);
            buf = dm.alloc(4096, 64);
            q.setSize(size);
            q.setFeatures(features);
            q.setMemory(dm.guestMemory(1));
            q.setRings(dq.descRing(), dq.availRing(), dq.usedRing());
            q.setBase(start);
            q.start();
        }

        int post() {
            a[0] = buf;
            l[0] = 64;
            int h = dq.add(a, l, 0, 1, false);
            dq.publish();
            return h;
        }

        @Override
        public void close() {
            dm.close();
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 65534})
    void eventIdxCallOnlyWhenUsedEventCrossed(int start) {
        try (Pair p = new Pair(8, EVENT_IDX, start)) {
            for (int i = 0; i < 4; i++) {
                p.post();
            }
            assertTrue(p.dq.enableCallbacks() == false, "nothing used yet");
            // driver wants a call when entry 'start' is used
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.pushUsed(p.c.head(), 0);
            assertTrue(p.q.needsCall(), "first used entry after start");
            assertFalse(p.q.needsCall(), "nothing new published");
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.pushUsed(p.c.head(), 0);
            assertFalse(p.q.needsCall(), "driver has not re-armed (used_event still at start)");
            // driver reclaims both and re-arms at its last used index
            assertTrue(p.dq.pollUsed() != -1);
            assertTrue(p.dq.pollUsed() != -1);
            assertFalse(p.dq.enableCallbacks());
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.addUsed(p.c.head(), 0);
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.addUsed(p.c.head(), 0);
            p.q.publishUsed();
            assertTrue(p.q.needsCall(), "batch crossed used_event: one call for two entries");
        }
    }

    @Test
    void noInterruptFlagSuppressesCalls() {
        try (Pair p = new Pair(8, 0, 0)) {
            p.post();
            p.post();
            p.dq.disableCallbacks();
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.pushUsed(p.c.head(), 0);
            assertFalse(p.q.needsCall());
            assertTrue(p.dq.enableCallbacks(), "re-enable sees the pending used entry");
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.pushUsed(p.c.head(), 0);
            assertTrue(p.q.needsCall());
        }
    }

    @ParameterizedTest
    @ValueSource(longs = {0, EVENT_IDX})
    void kickSuppressionAndReenable(long features) {
        try (Pair p = new Pair(8, features, 65535)) {
            p.post();
            assertTrue(p.dq.kickNeeded(), "device is waiting initially");
            p.q.disableNotification();
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.post();
            assertFalse(p.dq.kickNeeded(), "device said it is polling");
            assertTrue(p.q.enableNotification(), "an entry arrived while notifications were off");
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            assertFalse(p.q.enableNotification(), "ring empty: safe to sleep");
            p.post();
            assertTrue(p.dq.kickNeeded(), "device re-armed: the next entry kicks");
            p.post();
            if (features == EVENT_IDX) {
                assertFalse(p.dq.kickNeeded(), "EVENT_IDX: only the crossing entry kicks");
            }
        }
    }

    @Test
    void baseAndStopStart() {
        try (Pair p = new Pair(4, 0, 65534)) {
            p.post();
            p.post();
            p.post();
            assertEquals(SplitVirtqueue.CHAIN, p.q.next(p.c));
            p.q.addUsed(p.c.head(), 0);
            assertEquals(65535, p.q.stop(), "stop publishes the open batch and returns the base");
            assertEquals(1, p.dq.usedPending());
            assertEquals(SplitVirtqueue.NONE, p.q.next(p.c), "stopped");
            SplitVirtqueue q2 = new SplitVirtqueue("restarted");
            q2.setSize(4);
            q2.setMemory(p.q.memory());
            q2.setRings(p.dq.descRing(), p.dq.availRing(), p.dq.usedRing());
            q2.setBase(p.q.base());
            q2.start();
            assertEquals(SplitVirtqueue.CHAIN, q2.next(p.c));
            assertEquals(SplitVirtqueue.CHAIN, q2.next(p.c));
            assertEquals(1, q2.base());
            assertEquals(SplitVirtqueue.NONE, q2.next(p.c));
            q2.rewind(1);
            assertEquals(0, q2.base());
            assertEquals(SplitVirtqueue.CHAIN, q2.next(p.c));
        }
    }
}
