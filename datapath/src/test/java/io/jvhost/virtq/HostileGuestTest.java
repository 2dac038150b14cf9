package io.jvhost.virtq;

import io.jvhost.virtq.BrokenQueues;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;

import static io.jvhost.virtq.VringDesc.F_INDIRECT;
import static io.jvhost.virtq.VringDesc.F_NEXT;
import static io.jvhost.virtq.VringDesc.F_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Each way a driver can misbehave marks only its queue broken, with a reason, and touches nothing outside its memory. */
class HostileGuestTest {
    static final long INDIRECT = 1L << VirtioFeatures.RING_F_INDIRECT_DESC;

    static void assertBroken(RawRing r, VirtqError reason) {
        long before = BrokenQueues.count();
        assertEquals(SplitVirtqueue.BROKEN, r.next());
        assertEquals(reason, r.q.brokenReason(), r.q.brokenMessage());
        assertNotNull(r.q.brokenMessage());
        assertTrue(BrokenQueues.count() >= before + 1 || before > 0);
        // stays broken, takes nothing more
        assertEquals(SplitVirtqueue.BROKEN, r.next());
    }

    @Test
    void headOutOfRange() {
        try (RawRing r = new RawRing(8, 0, 1, 16)) {
            r.offer(8);
            assertBroken(r, VirtqError.HEAD_OUT_OF_RANGE);
        }
    }

    @Test
    void nextOutOfRange() {
        try (RawRing r = new RawRing(8, 0, 1, 16)) {
            r.desc(0, r.dataGpa, 64, F_NEXT, 9);
            r.offer(0);
            assertBroken(r, VirtqError.NEXT_OUT_OF_RANGE);
        }
    }

    @Test
    void selfLoop() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            r.desc(3, r.dataGpa, 0, F_NEXT, 3);
            r.offer(3);
            assertBroken(r, VirtqError.CHAIN_LOOP);
        }
    }

    @Test
    void longerLoop() {
        try (RawRing r = new RawRing(16, 0, 1, 64)) {
            for (int i = 0; i < 16; i++) {
                r.desc(i, r.dataGpa + i, 1, F_NEXT, (i + 1) % 16);
            }
            r.offer(5);
            assertBroken(r, VirtqError.CHAIN_LOOP);
        }
    }

    @Test
    void loopInsideIndirectTable() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            long t = r.dataGpa + 1024;
            r.indirectDesc(t, 0, r.dataGpa, 1, F_NEXT, 1);
            r.indirectDesc(t, 1, r.dataGpa, 1, F_NEXT, 0);
            r.desc(0, t, 32, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.CHAIN_LOOP);
        }
    }

    @Test
    void indirectNextOutOfTable() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            long t = r.dataGpa + 1024;
            r.indirectDesc(t, 0, r.dataGpa, 1, F_NEXT, 2); // table has 2 entries
            r.indirectDesc(t, 1, r.dataGpa, 1, 0, 0);
            r.desc(0, t, 32, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.NEXT_OUT_OF_RANGE);
        }
    }

    @Test
    void nestedIndirect() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            long t = r.dataGpa + 1024;
            r.indirectDesc(t, 0, t, 16, F_INDIRECT, 0);
            r.desc(0, t, 16, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.NESTED_INDIRECT);
        }
    }

    @Test
    void indirectWithNext() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            long t = r.dataGpa + 1024;
            r.indirectDesc(t, 0, r.dataGpa, 8, 0, 0);
            r.desc(0, t, 16, F_INDIRECT | F_NEXT, 1);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_WITH_NEXT);
        }
    }

    @Test
    void indirectNotNegotiated() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            long t = r.dataGpa + 1024;
            r.indirectDesc(t, 0, r.dataGpa, 8, 0, 0);
            r.desc(0, t, 16, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_NOT_NEGOTIATED);
        }
    }

    @Test
    void indirectLengthZero() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            r.desc(0, r.dataGpa, 0, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_BAD_LENGTH);
        }
    }

    @Test
    void indirectLengthNotMultipleOf16() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            r.desc(0, r.dataGpa, 24, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_BAD_LENGTH);
        }
    }

    @Test
    void indirectTooLarge() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            r.desc(0, r.dataGpa, (Chain.UIO_MAXIOV + 1) * 16, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_BAD_LENGTH);
        }
    }

    @Test
    void indirectHugeLengthWrapsUnsigned() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            r.desc(0, r.dataGpa, 0xfffffff0, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_BAD_LENGTH);
        }
    }

    @Test
    void indirectTableOutsideMemory() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            r.desc(0, 0x1000, 16, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_OUTSIDE_MEMORY);
        }
    }

    @Test
    void indirectTableCrossingEndOfMemory() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 64)) {
            long end = r.mem.gpaBase() + r.mem.size();
            r.desc(0, end - 16, 32, F_INDIRECT, 0);
            r.offer(0);
            assertBroken(r, VirtqError.INDIRECT_OUTSIDE_MEMORY);
        }
    }

    @Test
    void bufferOutsideMemory() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            r.desc(0, 0x10, 64, 0, 0);
            r.offer(0);
            assertBroken(r, VirtqError.BUFFER_OUTSIDE_MEMORY);
        }
    }

    @Test
    void bufferCrossingEndOfMemory() {
        try (RawRing r = new RawRing(8, 0, 4, 64)) {
            long end = r.mem.gpaBase() + r.mem.size();
            r.desc(0, end - 100, 101, F_WRITE, 0);
            r.offer(0);
            assertBroken(r, VirtqError.BUFFER_OUTSIDE_MEMORY);
        }
    }

    @Test
    void bufferOverflowing64Bits() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            r.desc(0, -16L, 64, 0, 0);
            r.offer(0);
            assertBroken(r, VirtqError.BUFFER_OUTSIDE_MEMORY);
        }
    }

    @Test
    void readableAfterWritable() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            r.desc(0, r.dataGpa, 64, F_WRITE | F_NEXT, 1);
            r.desc(1, r.dataGpa + 64, 64, 0, 0);
            r.offer(0);
            assertBroken(r, VirtqError.READABLE_AFTER_WRITABLE);
        }
    }

    @Test
    void readableAfterZeroLengthWritable() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            r.desc(0, r.dataGpa, 0, F_WRITE | F_NEXT, 1);
            r.desc(1, r.dataGpa + 64, 64, 0, 0);
            r.offer(0);
            assertBroken(r, VirtqError.READABLE_AFTER_WRITABLE);
        }
    }

    /**
     * A chain held in flight (an RX window waiting for a frame) while more chains than the ring has
     * descriptors are taken and used behind it: it is still in flight, and a stop returns it used,
     * so every chain taken is accounted for.
     */
    @Test
    void heldChainSurvivesMoreCompletionsBehindItThanTheRingHolds() {
        try (RawRing r = new RawRing(8, 0, 1, 16)) {
            for (int i = 0; i < 8; i++) {
                r.desc(i, r.dataGpa + 64L * i, 64, F_WRITE, 0);
            }
            r.offer(0);
            assertEquals(SplitVirtqueue.CHAIN, r.next());
            int held = r.chain.head();
            for (int k = 0; k < 20; k++) {
                r.offer(1 + k % 7);
                assertEquals(SplitVirtqueue.CHAIN, r.next());
                r.q.pushUsed(r.chain.head(), 0);
            }
            assertEquals(1, r.q.inFlight());
            r.q.returnInFlight();
            assertEquals(0, r.q.inFlight());
            int usedIdx = VringUsed.idxAcquire(r.used);
            assertEquals(21, usedIdx, "every chain taken is used once");
            assertEquals(held, VringUsed.elemId(r.used, 20 % 8));
            assertNull(r.q.brokenReason());
        }
    }

    /** A head made available again while in flight, until more chains are in flight than the ring holds. */
    @Test
    void headReusedWhileInFlightBeyondTheRing() {
        try (RawRing r = new RawRing(4, 0, 1, 16)) {
            r.desc(0, r.dataGpa, 64, F_WRITE, 0);
            for (int k = 0; k < 4; k++) {
                r.offer(0);
                assertEquals(SplitVirtqueue.CHAIN, r.next());
            }
            r.offer(0);
            assertBroken(r, VirtqError.IN_FLIGHT_OVERFLOW);
        }
    }

    @Test
    void availIndexJump() {
        try (RawRing r = new RawRing(8, 0, 1, 64)) {
            VringAvail.idxRelease(r.avail, 9);
            assertBroken(r, VirtqError.AVAIL_INDEX_JUMP);
        }
    }

    @Test
    void availIndexJumpAcrossWrap() {
        try (RawRing r = new RawRing(8, 0, 1, 64, 1 << 20, 65533)) {
            VringAvail.idxRelease(r.avail, (65533 + 9) & 0xffff);
            assertBroken(r, VirtqError.AVAIL_INDEX_JUMP);
        }
    }

    @Test
    void availIndexBackwards() {
        try (RawRing r = new RawRing(8, 0, 1, 64, 1 << 20, 100)) {
            VringAvail.idxRelease(r.avail, 99);
            assertBroken(r, VirtqError.AVAIL_INDEX_JUMP);
        }
    }

    @Test
    void chainLongerThanIovecCapacity() {
        try (RawRing r = new RawRing(8, 0, 1, 4)) {
            for (int i = 0; i < 5; i++) {
                r.desc(i, r.dataGpa + 8L * i, 8, i < 4 ? F_NEXT : 0, i + 1);
            }
            r.offer(0);
            assertBroken(r, VirtqError.IOV_OVERFLOW);
        }
    }

    @Test
    void regionSplitCountsTowardsIovecCapacity() {
        try (RawRing r = new RawRing(8, 0, 4, 1)) {
            long boundary = r.mem.gpaBase() + r.mem.size() / 4;
            r.desc(0, boundary - 8, 16, 0, 0);
            r.offer(0);
            assertBroken(r, VirtqError.IOV_OVERFLOW);
        }
    }

    @Test
    void ringsOutsideMemory() {
        try (RawRing r = new RawRing(8, 0, 1, 4)) {
            SplitVirtqueue q = new SplitVirtqueue("bad-rings");
            q.setSize(8);
            q.setMemory(r.guest);
            assertFalse(q.setAddresses(0x1000, r.mem.userAddress(r.availGpa), r.mem.userAddress(r.usedGpa)));
            assertEquals(VirtqError.BAD_RING_ADDRESS, q.brokenReason());
        }
    }

    @Test
    void ringsMisaligned() {
        try (RawRing r = new RawRing(8, 0, 1, 4)) {
            SplitVirtqueue q = new SplitVirtqueue("bad-rings");
            q.setSize(8);
            q.setMemory(r.guest);
            assertFalse(q.setAddresses(r.mem.userAddress(r.descGpa), r.mem.userAddress(r.availGpa),
                    r.mem.userAddress(r.usedGpa) + 2));
            assertEquals(VirtqError.BAD_RING_ADDRESS, q.brokenReason());
        }
    }

    @Test
    void brokenHandlerRunsOnceAndOtherQueuesKeepWorking() {
        try (RawRing bad = new RawRing(8, 0, 1, 16); RawRing good = new RawRing(8, 0, 1, 16)) {
            AtomicInteger calls = new AtomicInteger();
            bad.q.setBrokenHandler(q -> calls.incrementAndGet());
            bad.offer(200);
            bad.offer(201);
            assertEquals(SplitVirtqueue.BROKEN, bad.next());
            assertEquals(SplitVirtqueue.BROKEN, bad.next());
            assertEquals(1, calls.get());
            assertEquals(1, bad.q.errorCount());

            good.desc(0, good.dataGpa, 100, 0, 0);
            good.offer(0);
            assertEquals(SplitVirtqueue.CHAIN, good.next());
            assertNull(good.q.brokenReason());
            assertTrue(good.iovecsInside());
        }
    }

    /** Not broken: a chain the frame does not fit is returned with used length 0 and the queue goes on. */
    @Test
    void bufferTooSmallIsReturnedWithZeroLength() {
        try (RawRing r = new RawRing(8, 0, 1, 16)) {
            r.desc(0, r.dataGpa, 4, F_WRITE, 0); // a 4-byte RX buffer: no frame fits
            r.desc(1, r.dataGpa + 64, 1500, F_WRITE, 0);
            r.offer(0);
            r.offer(1);
            assertEquals(SplitVirtqueue.CHAIN, r.next());
            assertEquals(4, r.chain.writableBytes());
            r.q.pushUsed(r.chain.head(), 0); // drop, counted by the caller
            assertEquals(SplitVirtqueue.CHAIN, r.next());
            assertEquals(1, r.chain.head());
            r.q.pushUsed(r.chain.head(), 1500);
            assertNull(r.q.brokenReason());
            assertEquals(2, VringUsed.idxAcquire(r.used));
            assertEquals(0, VringUsed.elemId(r.used, 0));
            assertEquals(0, VringUsed.elemLen(r.used, 0));
            assertEquals(1500, VringUsed.elemLen(r.used, 1));
        }
    }

    @Test
    void directChainThenIndirectTableIsAccepted() {
        try (RawRing r = new RawRing(8, INDIRECT, 1, 16)) {
            long t = r.dataGpa + 1024;
            r.indirectDesc(t, 0, r.dataGpa + 256, 10, F_WRITE | F_NEXT, 1);
            r.indirectDesc(t, 1, r.dataGpa + 512, 20, F_WRITE, 0);
            r.desc(2, r.dataGpa, 12, F_NEXT, 5);
            r.desc(5, t, 32, F_INDIRECT, 0);
            r.offer(2);
            assertEquals(SplitVirtqueue.CHAIN, r.next());
            assertEquals(2, r.chain.head());
            assertEquals(12, r.chain.readableBytes());
            assertEquals(30, r.chain.writableBytes());
            assertEquals(2, r.chain.writableCount());
            assertEquals(3, r.chain.descriptorCount());
            assertTrue(r.iovecsInside());
        }
    }

    @Test
    void bufferSpanningTwoRegionsBecomesTwoIovecs() {
        try (RawRing r = new RawRing(8, 0, 4, 16)) {
            long boundary = r.mem.gpaBase() + r.mem.size() / 4;
            r.desc(0, boundary - 100, 300, F_WRITE, 0);
            r.offer(0);
            assertEquals(SplitVirtqueue.CHAIN, r.next());
            assertEquals(2, r.chain.writableCount());
            assertEquals(100, r.chain.writableLen(0));
            assertEquals(200, r.chain.writableLen(1));
            assertEquals(r.mem.hostAddress(boundary - 100), r.chain.writableBase(0));
            assertEquals(r.mem.hostAddress(boundary), r.chain.writableBase(1));
        }
    }
}
