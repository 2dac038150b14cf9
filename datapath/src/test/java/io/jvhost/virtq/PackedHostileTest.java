package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;

import java.util.logging.Level;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A hostile driver against a packed ring: each violation marks only that queue broken, with its
 * reason and a message, and {@link DeviceQueue#next} returns {@link DeviceQueue#BROKEN} from then
 * on; a second queue next to it keeps working. A descriptor that never becomes available is no
 * violation: nothing is available.
 */
class PackedHostileTest {
    private static final long INDIRECT = 1L << VirtioFeatures.RING_F_INDIRECT_DESC;
    private static final long EVENT_IDX = 1L << VirtioFeatures.RING_F_EVENT_IDX;
    private static final int AVAIL = PackedDesc.availFlags(true);

    static {
        Logger.getLogger(PackedVirtqueue.class.getName()).setLevel(Level.OFF);
    }

    private static void assertBroken(PackedRing r, VirtqError reason) {
        assertEquals(DeviceQueue.BROKEN, r.next(), () -> "expected " + reason + ", queue " + r.q);
        assertEquals(reason, r.q.brokenReason(), r.q.brokenMessage());
        assertNotNull(r.q.brokenMessage());
        assertEquals(DeviceQueue.BROKEN, r.next(), "stays broken");
        // only this queue: another one next to it still works
        try (PackedRing other = new PackedRing(4, 0, 1, 8)) {
            other.offer(0, other.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, other.next());
        }
    }

    @Test
    void flagsThatNeverMatchTheWrapCounterMeanNothingAvailable() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            for (int f : new int[]{0, PackedDesc.F_AVAIL | PackedDesc.F_USED, PackedDesc.availFlags(false)}) {
                r.put(0, r.dataGpa, 8, 0, f);
                assertEquals(DeviceQueue.NONE, r.next());
            }
            assertNull(r.q.brokenReason());
            assertEquals(0, r.q.pending());
        }
    }

    @Test
    void aChainWhoseSecondDescriptorIsNotAvailableIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.put(1, r.dataGpa, 8, 0, 0); // not available (AVAIL=USED=0 with wrap 1)
            r.put(0, r.dataGpa, 8, 0, AVAIL | PackedDesc.F_NEXT);
            assertBroken(r, VirtqError.DESC_NOT_AVAILABLE);
        }
    }

    @Test
    void aWrapCounterFlippedMidChainIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.put(1, r.dataGpa, 8, 0, PackedDesc.availFlags(false));
            r.put(0, r.dataGpa, 8, 0, AVAIL | PackedDesc.F_NEXT);
            assertBroken(r, VirtqError.DESC_NOT_AVAILABLE);
        }
    }

    @Test
    void aChainAcrossTheLastSlotNeedsTheFlippedCounterThere() {
        try (PackedRing r = new PackedRing(2, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            r.q.pushUsed(0, 0);
            r.poll();
            // slot 1 (wrap 1) chains into slot 0, which still holds the wrap-1 pattern: not the flipped counter
            r.put(0, r.dataGpa, 8, 1, AVAIL);
            r.put(1, r.dataGpa, 8, 1, AVAIL | PackedDesc.F_NEXT);
            assertBroken(r, VirtqError.DESC_NOT_AVAILABLE);
        }
    }

    @Test
    void nextOnEverySlotWrappingForeverIsALoop() {
        try (PackedRing r = new PackedRing(3, 0, 1, 8)) {
            // every slot available for both counters is impossible; the chain runs out of free slots first
            r.put(1, r.dataGpa, 8, 0, AVAIL | PackedDesc.F_NEXT);
            r.put(2, r.dataGpa, 8, 0, AVAIL | PackedDesc.F_NEXT);
            r.put(0, r.dataGpa, 8, 0, AVAIL | PackedDesc.F_NEXT);
            assertEquals(DeviceQueue.BROKEN, r.next());
            assertTrue(r.q.brokenReason() == VirtqError.CHAIN_LOOP
                    || r.q.brokenReason() == VirtqError.DESC_NOT_AVAILABLE, r.q.brokenMessage());
        }
    }

    @Test
    void aChainLongerThanTheRingIsALoopEvenWithMatchingFlags() {
        try (PackedRing r = new PackedRing(1, 0, 1, 8)) {
            // size 1: slot 0 chains to itself; the flipped counter never matches, the length bound hits first
            r.put(0, r.dataGpa, 8, 0, AVAIL | PackedDesc.F_NEXT);
            assertBroken(r, VirtqError.CHAIN_LOOP);
        }
    }

    @Test
    void aChainRunningIntoSlotsInFlightIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 8, 0);
            r.offer(1, r.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            assertEquals(DeviceQueue.CHAIN, r.next());
            // slots 2,3 then on into 0 and 1, which the device has not returned
            r.put(3, r.dataGpa, 8, 2, AVAIL | PackedDesc.F_NEXT);
            r.put(0, r.dataGpa, 8, 2, PackedDesc.availFlags(false) | PackedDesc.F_NEXT);
            r.put(1, r.dataGpa, 8, 2, PackedDesc.availFlags(false) | PackedDesc.F_NEXT);
            r.put(2, r.dataGpa, 8, 2, AVAIL | PackedDesc.F_NEXT);
            assertBroken(r, VirtqError.CHAIN_LOOP);
        }
    }

    @Test
    void aBufferIdOutsideTheRingIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.put(0, r.dataGpa, 8, 4, AVAIL);
            assertBroken(r, VirtqError.BAD_BUFFER_ID);
        }
    }

    @Test
    void aBufferIdReusedWhileInFlightIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(2, r.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            r.put(1, r.dataGpa, 8, 2, AVAIL);
            assertBroken(r, VirtqError.BAD_BUFFER_ID);
        }
    }

    @Test
    void indirectWithNextIsBroken() {
        try (PackedRing r = new PackedRing(4, INDIRECT, 1, 8)) {
            r.indirectDesc(r.dataGpa + 4096, 0, r.dataGpa, 8, 0);
            r.put(1, r.dataGpa, 8, 0, AVAIL);
            r.put(0, r.dataGpa + 4096, 16, 0, AVAIL | PackedDesc.F_INDIRECT | PackedDesc.F_NEXT);
            assertBroken(r, VirtqError.INDIRECT_WITH_NEXT);
        }
    }

    @Test
    void nestedIndirectIsBroken() {
        try (PackedRing r = new PackedRing(4, INDIRECT, 1, 8)) {
            r.indirectDesc(r.dataGpa + 4096, 0, r.dataGpa + 4096, 16, PackedDesc.F_INDIRECT);
            r.offer(0, r.dataGpa + 4096, 16, PackedDesc.F_INDIRECT);
            assertBroken(r, VirtqError.NESTED_INDIRECT);
        }
    }

    @Test
    void indirectWithoutTheFeatureIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, r.dataGpa + 4096, 16, PackedDesc.F_INDIRECT);
            assertBroken(r, VirtqError.INDIRECT_NOT_NEGOTIATED);
        }
    }

    @Test
    void indirectTablesOfBadLengthOrOutsideMemoryAreBroken() {
        for (int len : new int[]{0, 15, 17, 16 * 70000}) {
            try (PackedRing r = new PackedRing(4, INDIRECT, 1, 8)) {
                r.offer(0, r.dataGpa + 4096, len, PackedDesc.F_INDIRECT);
                assertBroken(r, VirtqError.INDIRECT_BAD_LENGTH);
            }
        }
        try (PackedRing r = new PackedRing(4, INDIRECT, 1, 8)) {
            r.offer(0, r.mem.gpaBase() + r.mem.size() - 16, 32, PackedDesc.F_INDIRECT);
            assertBroken(r, VirtqError.INDIRECT_OUTSIDE_MEMORY);
        }
    }

    @Test
    void zeroLengthsGiveNoIovecAndHugeOnesAreOutsideMemory() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 0, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            assertEquals(0, r.chain.readableCount());
            r.offer(1, r.dataGpa, -1, 0); // 4 GiB - 1
            assertBroken(r, VirtqError.BUFFER_OUTSIDE_MEMORY);
        }
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, 0xffff_ffff_ffff_fff0L, 0x100, 0);
            assertBroken(r, VirtqError.BUFFER_OUTSIDE_MEMORY);
        }
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, 0x10, 8, 0); // below the guest's RAM
            assertBroken(r, VirtqError.BUFFER_OUTSIDE_MEMORY);
        }
    }

    @Test
    void readableAfterWritableIsBroken() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            r.offer(0, new long[]{r.dataGpa, r.dataGpa + 8}, new int[]{8, 8}, new int[]{PackedDesc.F_WRITE, 0});
            assertBroken(r, VirtqError.READABLE_AFTER_WRITABLE);
        }
    }

    @Test
    void moreIovecsThanTheChainHoldsIsBroken() {
        try (PackedRing r = new PackedRing(8, 0, 1, 2)) {
            r.offer(0, new long[]{r.dataGpa, r.dataGpa + 8, r.dataGpa + 16}, new int[]{8, 8, 8}, new int[]{0, 0, 0});
            assertBroken(r, VirtqError.IOV_OVERFLOW);
        }
    }

    @Test
    void anEventOffsetOutsideTheRingIsBroken() {
        try (PackedRing r = new PackedRing(4, EVENT_IDX, 1, 8)) {
            r.offer(0, r.dataGpa, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            r.q.pushUsed(0, 0);
            PackedEvent.set(r.driverEvent, PackedEvent.offWrap(4, true), PackedEvent.FLAG_DESC);
            r.q.needsCall();
            assertBroken(r, VirtqError.BAD_EVENT_SUPPRESSION);
        }
    }

    @Test
    void ringSizesOutsideOneTo32768AreRefused() {
        PackedVirtqueue q = new PackedVirtqueue("size");
        assertThrows(IllegalArgumentException.class, () -> q.setSize(0));
        assertThrows(IllegalArgumentException.class, () -> q.setSize(32769));
        assertThrows(IllegalArgumentException.class, () -> q.setSize(-1));
        q.setSize(32768);
        q.setSize(257);
        assertNull(RingLayout.PACKED.checkSize(3));
        assertNotNull(RingLayout.PACKED.checkSize(0));
    }

    @Test
    void ringAreasOutsideGuestMemoryBreakTheQueue() {
        try (PackedRing r = new PackedRing(4, 0, 1, 8)) {
            PackedVirtqueue q = new PackedVirtqueue("addr");
            q.setSize(4);
            q.setMemory(r.guest);
            assertEquals(false, q.setAddresses(0x10, r.mem.userAddress(r.driverGpa), r.mem.userAddress(r.deviceGpa)));
            assertEquals(VirtqError.BAD_RING_ADDRESS, q.brokenReason());
        }
    }
}
