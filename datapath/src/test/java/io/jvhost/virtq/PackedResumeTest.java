package io.jvhost.virtq;

import org.junit.jupiter.api.Test;

import java.util.logging.Level;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * The packed ring base (vhost-user {@code GET/SET_VRING_BASE}): bits 0-14 the next avail slot, bit
 * 15 the driver wrap counter; bits 16-31 the used slot and counter (QEMU sends and stores both
 * halves, DPDK 22.11 the low one: a high half of 0 means used = avail). A stop and restart resumes
 * exactly where the device stopped, also at slot 0 of an even lap (base 0), where the flags of
 * consumed slots still look available.
 */
class PackedResumeTest {
    static {
        Logger.getLogger(PackedVirtqueue.class.getName()).setLevel(Level.OFF);
    }

    private static PackedVirtqueue restart(PackedRing r, int base) {
        PackedVirtqueue q = new PackedVirtqueue("resumed");
        q.setSize(r.size);
        q.setMemory(r.guest);
        q.setRings(r.desc, r.driverEvent, r.deviceEvent);
        q.setBase(base);
        q.start();
        return q;
    }

    @Test
    void aFreshRingsBaseIsSlotZeroWithWrapOne() {
        try (PackedRing r = new PackedRing(5, 0, 1, 8)) {
            assertEquals(0x8000_8000, r.q.base(), "avail and used: slot 0, wrap counter 1");
            assertNull(RingLayout.PACKED.checkBase(0x8000, 5));
        }
    }

    @Test
    void stopAndRestartResumesAtTheBaseAcrossWraps() {
        try (PackedRing r = new PackedRing(3, 0, 1, 8)) {
            for (int i = 0; i < 4; i++) {
                r.offer(i % 3, r.dataGpa, 8, 0);
                assertEquals(DeviceQueue.CHAIN, r.next());
                r.q.pushUsed(i % 3, 0);
                assertEquals(1, r.poll());
            }
            r.offer(1, r.dataGpa, 8, 0);
            r.offer(2, r.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next()); // id 1 taken, not completed
            r.q.returnInFlight(); // the last taken: rewound
            int base = r.q.stop();
            assertEquals(PackedEvent.offWrap(1, false) * 0x1_0001, base, "slot 1 of the second lap (wrap 0), both halves");
            PackedVirtqueue q = restart(r, base);
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(1, r.chain.head());
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(2, r.chain.head());
            assertEquals(DeviceQueue.NONE, q.next(r.chain));
        }
    }

    @Test
    void theLowHalfAloneAsDpdkSendsItMeansUsedEqualsAvail() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 8, 0);
            PackedVirtqueue q = restart(r, 0x8000);
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            q.pushUsed(0, 0);
            assertEquals(PackedEvent.offWrap(1, true) * 0x1_0001, q.base());
        }
    }

    @Test
    void aBaseWithAUsedPositionResumesThere() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 8, 0);
            r.offer(1, r.dataGpa, 8, 0);
            r.offer(2, r.dataGpa, 8, 0);
            // a back-end took two and died; the front-end sends avail 2 with used 0 in the high half
            int base = PackedEvent.offWrap(2, true) | PackedEvent.offWrap(0, true) << 16;
            assertNull(RingLayout.PACKED.checkBase(base, 4));
            PackedVirtqueue q = restart(r, base);
            int n = 0;
            while (q.next(r.chain) == DeviceQueue.CHAIN) {
                q.pushUsed(r.chain.head(), 0);
                n++;
            }
            assertEquals(3, n, "the two in flight are taken again");
            assertEquals(PackedEvent.offWrap(3, true) * 0x1_0001, q.base());
        }
    }

    @Test
    void aBaseOfZeroIsSlotZeroOfAnEvenLapNotAStaleDescriptor() {
        try (PackedRing r = new PackedRing(3, 0, 1, 8)) {
            // a lap: a two-descriptor chain (slots 0-1) and one in slot 2; slot 1 still looks available for wrap 1
            r.offer(0, new long[]{r.dataGpa, r.dataGpa + 8}, new int[]{8, 8}, new int[]{0, 0});
            r.offer(1, r.dataGpa + 64, 8, 0);
            for (int i = 0; i < 2; i++) {
                assertEquals(DeviceQueue.CHAIN, r.next());
                r.q.pushUsed(r.chain.head(), 0);
                r.poll();
            }
            int base = r.q.stop();
            assertEquals(0, base, "slot 0, wrap counters 0: both halves zero");
            PackedVirtqueue q = restart(r, base);
            assertEquals(DeviceQueue.NONE, q.next(r.chain), "nothing new: the stale slot 1 is not taken");
            r.offer(2, r.dataGpa + 128, 8, 0);
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(2, r.chain.head());
            assertNull(q.brokenReason());
        }
    }

    @Test
    void theBaseWithChainsInFlightOutOfOrderReturnsThemAsUsed() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 8, PackedDesc.F_WRITE);
            r.offer(1, r.dataGpa, 8, PackedDesc.F_WRITE);
            assertEquals(DeviceQueue.CHAIN, r.next());
            assertEquals(DeviceQueue.CHAIN, r.next());
            r.q.pushUsed(1, 5); // the newer one first: id 0 is no longer the last taken
            r.q.returnInFlight();
            assertEquals(0, r.q.inFlight());
            assertEquals(PackedEvent.offWrap(2, true) * 0x1_0001, r.q.stop());
            assertEquals(1, r.poll());
            assertEquals(1, r.lastId);
            assertEquals(1, r.poll());
            assertEquals(0, r.lastId);
            assertEquals(0, r.lastLen);
        }
    }
}
