package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * VIRTIO_F_IN_ORDER on both formats: buffers are used in the order they were made available
 * whatever order the engine completes them in (a completion that overtakes waits, with its length),
 * rewind and returnInFlight stay correct with completions held back; a run of read-only (TX)
 * buffers is published as one used element (split: at the run's first slot, used.idx moved by the
 * run's length) or one used descriptor (packed) naming the run's last buffer, while every buffer
 * with a writable part keeps its own element or descriptor and length.
 */
class InOrderTest {
    private static final long IN_ORDER = 1L << VirtioFeatures.F_IN_ORDER;

    // ---------------------------------------------------------------- split

    @Test
    void splitUsesBuffersInTheOrderMadeAvailable() {
        try (RawRing r = new RawRing(8, IN_ORDER, 1, 8)) {
            for (int h = 0; h < 4; h++) {
                r.desc(h, r.dataGpa + h * 64L, 64, VringDesc.F_WRITE, 0);
                r.offer(h);
            }
            for (int h = 0; h < 4; h++) {
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(2, 22);
            r.q.addUsed(1, 11);
            r.q.publishUsed();
            assertEquals(0, VringUsed.idxAcquire(r.used), "held back behind head 0");
            assertEquals(2, r.q.inFlight(), "0 and 3 still in flight");
            r.q.addUsed(0, 10);
            r.q.publishUsed();
            assertEquals(3, VringUsed.idxAcquire(r.used));
            int[] ids = {0, 1, 2};
            int[] lens = {10, 11, 22};
            for (int i = 0; i < 3; i++) {
                assertEquals(ids[i], VringUsed.elemId(r.used, i));
                assertEquals(lens[i], VringUsed.elemLen(r.used, i));
            }
            r.q.returnInFlight(); // head 3: the last taken, rewound
            assertEquals(0, r.q.inFlight());
            assertEquals(3, r.q.base());
        }
    }

    @Test
    void splitReturnInFlightUsesHeldBackCompletionsWithTheirLengths() {
        try (RawRing r = new RawRing(8, IN_ORDER, 1, 8)) {
            for (int h = 0; h < 3; h++) {
                r.desc(h, r.dataGpa + h * 64L, 64, VringDesc.F_WRITE, 0);
                r.offer(h);
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(1, 5);
            r.q.returnInFlight();
            assertEquals(0, r.q.inFlight());
            assertEquals(3, VringUsed.idxAcquire(r.used));
            assertEquals(0, VringUsed.elemId(r.used, 0));
            assertEquals(0, VringUsed.elemLen(r.used, 0));
            assertEquals(1, VringUsed.elemId(r.used, 1));
            assertEquals(5, VringUsed.elemLen(r.used, 1));
            assertEquals(2, VringUsed.elemId(r.used, 2));
        }
    }

    @Test
    void splitRewindForgetsAHeldBackCompletionOfARewoundChain() {
        try (RawRing r = new RawRing(8, IN_ORDER, 1, 8)) {
            for (int h = 0; h < 3; h++) {
                r.desc(h, r.dataGpa + h * 64L, 64, VringDesc.F_WRITE, 0);
                r.offer(h);
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.rewind(1);
            assertEquals(2, r.q.inFlight());
            assertEquals(DeviceQueue.CHAIN, r.next());
            assertEquals(2, r.chain.head());
        }
    }

    @Test
    void splitRefusesAChainBeyondTheQueueSizeInFlight() {
        try (RawRing r = new RawRing(4, IN_ORDER, 1, 8)) {
            r.desc(0, r.dataGpa, 64, VringDesc.F_WRITE, 0);
            r.desc(1, r.dataGpa + 64, 64, VringDesc.F_WRITE, 0);
            for (int k = 0; k < 4; k++) {
                r.offer(k % 2); // a hostile driver re-posts heads still in flight
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(1, 5); // held back behind head 0: still in flight for the ring
            r.offer(1);
            assertEquals(DeviceQueue.BROKEN, r.next());
            assertEquals(VirtqError.IN_FLIGHT_OVERFLOW, r.q.brokenReason());
            r.q.returnInFlight(); // all four come back, none lost
            assertEquals(0, r.q.inFlight());
            assertEquals(r.q.base(), VringUsed.idxAcquire(r.used) + 0);
        }
    }

    private static final int STALE = 0xdead;

    /** Split ring of {@code size}; heads 0..n-1 offered and taken, {@code writable} marking which have a writable buffer. */
    private static RawRing splitTaken(int size, boolean... writable) {
        RawRing r = new RawRing(size, IN_ORDER, 1, 8);
        for (int i = 0; i < size; i++) {
            VringUsed.putElem(r.used, i, STALE, STALE);
        }
        for (int h = 0; h < writable.length; h++) {
            r.desc(h, r.dataGpa + h * 64L, 64, writable[h] ? VringDesc.F_WRITE : 0, 0);
            r.offer(h);
            assertEquals(DeviceQueue.CHAIN, r.next());
        }
        return r;
    }

    @Test
    void splitReadOnlyRunsShareOneUsedElementAndUsedIdxCountsEveryChain() {
        try (RawRing r = splitTaken(8, false, false, false, false)) {
            r.q.addUsed(3, 0);
            r.q.addUsed(1, 0);
            r.q.addUsed(0, 0);
            r.q.addUsed(2, 0);
            r.q.publishUsed();
            assertEquals(4, VringUsed.idxAcquire(r.used), "used.idx moves by the run's length");
            assertEquals(3, VringUsed.elemId(r.used, 0), "one element at the run's first slot names its last head");
            assertEquals(0, VringUsed.elemLen(r.used, 0));
            for (int i = 1; i < 4; i++) {
                assertEquals(STALE, VringUsed.elemId(r.used, i), "slot " + i + " is skipped");
            }
            assertEquals(0, r.q.inFlight());
            assertEquals(4, r.q.base());
        }
    }

    @Test
    void splitChainWithAWritablePartKeepsItsOwnElementAndEndsTheRun() {
        try (RawRing r = splitTaken(8, false, false, true, false, false)) {
            r.q.addUsed(0, 0);
            r.q.addUsed(1, 0);
            r.q.addUsed(2, 10);
            r.q.addUsed(3, 0);
            r.q.addUsed(4, 0);
            r.q.publishUsed();
            assertEquals(5, VringUsed.idxAcquire(r.used));
            assertEquals(1, VringUsed.elemId(r.used, 0));
            assertEquals(STALE, VringUsed.elemId(r.used, 1));
            assertEquals(2, VringUsed.elemId(r.used, 2));
            assertEquals(10, VringUsed.elemLen(r.used, 2));
            assertEquals(4, VringUsed.elemId(r.used, 3));
            assertEquals(STALE, VringUsed.elemId(r.used, 4));
        }
    }

    @Test
    void splitWritableChainUsedWithLengthZeroIsNotElided() {
        try (RawRing r = splitTaken(8, true, true)) {
            r.q.addUsed(0, 0);
            r.q.addUsed(1, 0);
            r.q.publishUsed();
            assertEquals(2, VringUsed.idxAcquire(r.used));
            assertEquals(0, VringUsed.elemId(r.used, 0));
            assertEquals(1, VringUsed.elemId(r.used, 1));
        }
    }

    @Test
    void splitRunEndsAtEachPublish() {
        try (RawRing r = splitTaken(8, false, false, false, false)) {
            r.q.addUsed(0, 0);
            r.q.addUsed(1, 0);
            r.q.publishUsed();
            assertEquals(2, VringUsed.idxAcquire(r.used));
            assertEquals(1, VringUsed.elemId(r.used, 0));
            r.q.addUsed(2, 0);
            r.q.addUsed(3, 0);
            r.q.publishUsed();
            assertEquals(4, VringUsed.idxAcquire(r.used));
            assertEquals(3, VringUsed.elemId(r.used, 2));
            assertEquals(STALE, VringUsed.elemId(r.used, 3));
        }
    }

    @Test
    void splitHeadTwiceInOneRunEndsTheRunBeforeIt() {
        try (RawRing r = new RawRing(8, IN_ORDER, 1, 8)) {
            for (int i = 0; i < 8; i++) {
                VringUsed.putElem(r.used, i, STALE, STALE);
            }
            r.desc(0, r.dataGpa, 64, 0, 0);
            r.desc(1, r.dataGpa + 64, 64, 0, 0);
            for (int h : new int[] {0, 1, 0}) { // a hostile driver re-posts head 0 while it is in flight
                r.offer(h);
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(0, 0);
            r.q.addUsed(1, 0);
            r.q.addUsed(0, 0);
            r.q.publishUsed();
            assertEquals(3, VringUsed.idxAcquire(r.used));
            assertEquals(1, VringUsed.elemId(r.used, 0), "the run 0, 1 ends at its last head, 1");
            assertEquals(STALE, VringUsed.elemId(r.used, 1));
            assertEquals(0, VringUsed.elemId(r.used, 2), "the second 0 starts a run of its own");
        }
    }

    @Test
    void splitStopPublishesTheOpenRunAndARestartResumesAtUsedIdx() {
        try (RawRing r = splitTaken(8, false, false, false)) {
            r.q.addUsed(0, 0);
            r.q.addUsed(1, 0);
            r.q.returnInFlight(); // head 2: the last taken, rewound
            assertEquals(2, r.q.stop());
            assertEquals(2, VringUsed.idxAcquire(r.used));
            assertEquals(1, VringUsed.elemId(r.used, 0));
        }
    }

    // ---------------------------------------------------------------- packed

    @Test
    void packedReadOnlyRunsShareOneUsedDescriptor() {
        try (PackedRing r = new PackedRing(8, IN_ORDER, 1, 8)) {
            for (int id = 0; id < 4; id++) {
                r.offer(id, r.dataGpa + id * 64L, 64, 0);
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(3, 0);
            r.q.addUsed(1, 0);
            r.q.addUsed(0, 0);
            r.q.addUsed(2, 0);
            r.q.publishUsed();
            assertEquals(4, r.poll(), "one used descriptor completes all four");
            assertEquals(3, r.lastId);
            assertEquals(0, r.poll());
            assertEquals(PackedEvent.offWrap(4, true) * 0x1_0001, r.q.base());
        }
    }

    @Test
    void packedWritableBuffersKeepTheirOwnDescriptorsAndLengths() {
        try (PackedRing r = new PackedRing(5, IN_ORDER, 1, 8)) {
            r.offer(0, r.dataGpa, 64, 0);
            r.offer(1, r.dataGpa + 64, 64, 0);
            r.offer(2, r.dataGpa + 128, 64, PackedDesc.F_WRITE);
            r.offer(3, r.dataGpa + 192, 64, PackedDesc.F_WRITE);
            for (int i = 0; i < 4; i++) {
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(3, 33);
            r.q.addUsed(2, 22);
            r.q.addUsed(1, 0);
            r.q.addUsed(0, 0);
            r.q.publishUsed();
            assertEquals(2, r.poll(), "the read-only run 0,1");
            assertEquals(1, r.lastId);
            assertEquals(1, r.poll());
            assertEquals(2, r.lastId);
            assertEquals(22, r.lastLen);
            assertEquals(1, r.poll());
            assertEquals(3, r.lastId);
            assertEquals(33, r.lastLen);
        }
    }

    @Test
    void packedReturnInFlightAndRewindWithHeldBackCompletions() {
        try (PackedRing r = new PackedRing(6, IN_ORDER, 1, 8)) {
            for (int id = 0; id < 4; id++) {
                r.offer(id, r.dataGpa + id * 64L, 64, PackedDesc.F_WRITE);
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(2, 7);
            r.q.rewind(1); // id 3 back
            assertEquals(2, r.q.inFlight());
            assertEquals(DeviceQueue.CHAIN, r.next());
            assertEquals(3, r.chain.head());
            r.q.returnInFlight();
            assertEquals(0, r.q.inFlight());
            int[] lens = {0, 0, 7, 0};
            for (int id = 0; id < 4; id++) {
                assertEquals(1, r.poll());
                assertEquals(id, r.lastId);
                assertEquals(lens[id], r.lastLen);
            }
            assertEquals(PackedEvent.offWrap(4, true) * 0x1_0001, r.q.stop());
        }
    }
}
