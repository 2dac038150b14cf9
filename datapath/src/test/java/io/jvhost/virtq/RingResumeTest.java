package io.jvhost.virtq;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * Where a (re)started ring resumes when the front-end's idea of the ring base is not the ring's
 * {@code used.idx}. Both cases come from restarting the back-end under a running front-end:
 * QEMU, after losing its back-end, sets its last avail index to the used index (in-flight chains
 * are offered again); DPDK virtio-user sends base 0 for a ring whose indices have long moved on.
 */
class RingResumeTest {
    private static final int SIZE = 64;
    private static final int START = 500;

    private static SplitVirtqueue deviceQueue(DriverMemory dm, DriverVirtqueue dq, int base) {
        SplitVirtqueue q = new SplitVirtqueue("resume");
        q.setSize(SIZE);
        q.setMemory(dm.guestMemory(1));
        q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()), dm.userAddress(dq.usedGpa()));
        q.setBase(base);
        q.start();
        return q;
    }

    private static void post(DriverMemory dm, DriverVirtqueue dq, int n) {
        long buf = dm.gpaBase() + dm.size() - 4096;
        for (int i = 0; i < n; i++) {
            dq.add(new long[]{buf}, new int[]{64}, 0, 1, false);
        }
        dq.publish();
    }

    @Test
    void chainsTakenByADeadBackEndAreOfferedAgainFromTheUsedIndex() {
        try (DriverMemory dm = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            DriverVirtqueue dq = new DriverVirtqueue(dm, SIZE, 0, 0, START);
            post(dm, dq, 3);
            Chain c = new Chain(arena, 8);
            SplitVirtqueue first = deviceQueue(dm, dq, START);
            assertEquals(SplitVirtqueue.CHAIN, first.next(c));
            assertEquals(SplitVirtqueue.CHAIN, first.next(c));
            // the back-end dies here: two chains taken, none returned; QEMU restores base = used.idx
            SplitVirtqueue second = deviceQueue(dm, dq, START);
            int taken = 0;
            while (second.next(c) == SplitVirtqueue.CHAIN) {
                second.pushUsed(c.head(), 0);
                taken++;
            }
            assertEquals(3, taken, "all three chains, the two in flight included");
            assertEquals(3, dq.usedPending(), "each returned exactly once");
            for (int i = 0; i < 3; i++) {
                dq.pollUsed(); // throws if a head came back that is not in flight (a duplicate)
            }
        }
    }

    @Test
    void aBaseBehindTheUsedIndexResumesAtTheUsedIndex() {
        try (DriverMemory dm = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            DriverVirtqueue dq = new DriverVirtqueue(dm, SIZE, 0, 0, START);
            post(dm, dq, 2);
            Chain c = new Chain(arena, 8);
            // virtio-user after a back-end reconnect: base 0 for a ring at 500. Taken literally
            // that is an avail index jump of 502 > 64 and the queue would be broken.
            SplitVirtqueue q = deviceQueue(dm, dq, 0);
            assertEquals(START, q.base(), "resumes at used.idx");
            assertEquals(2, q.pending());
            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(SplitVirtqueue.NONE, q.next(c));
            assertFalse(q.isBroken(), String.valueOf(q.brokenReason()));
        }
    }

    @Test
    void aMatchingBaseIsKept() {
        try (DriverMemory dm = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE)) {
            DriverVirtqueue dq = new DriverVirtqueue(dm, SIZE, 0, 0, 65535);
            SplitVirtqueue q = deviceQueue(dm, dq, 65535);
            assertEquals(65535, q.base());
            assertEquals(0, q.pending());
        }
    }
}
