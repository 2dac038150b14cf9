package io.jvhost.virtq;

import io.jvhost.driver.DriverMemory;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Ring addresses given as front-end virtual addresses belong to one front-end and one start. Found
 * with QEMU restarted under a reconnecting jvhost: after the reset the queue still re-translated the
 * old QEMU's addresses against the new QEMU's first memory table and marked itself broken, so the
 * new guest's traffic never flowed.
 */
class RingAddressLifecycleTest {
    private static final int SIZE = 64;

    private static long[] rings(DriverMemory m) {
        long d = m.alloc(VringDesc.tableSize(SIZE), 4096);
        long a = m.alloc(VringAvail.sizeOf(SIZE), 4096);
        long u = m.alloc(VringUsed.sizeOf(SIZE), 4096);
        return new long[]{m.userAddress(d), m.userAddress(a), m.userAddress(u)};
    }

    @Test
    void resetForgetsTheOldFrontEndsRings() {
        try (DriverMemory first = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             DriverMemory second = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE)) {
            SplitVirtqueue q = new SplitVirtqueue("lifecycle");
            q.setSize(SIZE);
            q.setMemory(first.guestMemory(1));
            long[] r1 = rings(first);
            assertTrue(q.setAddresses(r1[0], r1[1], r1[2]));
            q.start();
            q.stop();
            q.reset(); // front-end gone
            // the next front-end's memory arrives before its ring addresses
            assertTrue(q.setMemory(second.guestMemory(1)), "old addresses are not re-translated");
            assertFalse(q.isBroken());
            assertThrows(IllegalStateException.class, q::start, "no rings until the new addresses come");
            long[] r2 = rings(second);
            q.setSize(SIZE);
            assertTrue(q.setAddresses(r2[0], r2[1], r2[2]));
            q.start();
            assertTrue(q.started());
            assertNull(q.brokenReason());
        }
    }

    @Test
    void aStoppedRingOutsideANewTableIsNoDriverError() {
        try (DriverMemory first = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             DriverMemory second = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE)) {
            SplitVirtqueue q = new SplitVirtqueue("stopped");
            q.setSize(SIZE);
            q.setMemory(first.guestMemory(1));
            long[] r1 = rings(first);
            assertTrue(q.setAddresses(r1[0], r1[1], r1[2]));
            q.start();
            assertEquals(0, q.stop());
            assertTrue(q.setMemory(second.guestMemory(1)));
            assertFalse(q.isBroken());
            assertThrows(IllegalStateException.class, q::start, "the stale rings were dropped");
        }
    }

    @Test
    void aStartedRingOutsideANewTableStillBreaksTheQueue() {
        try (DriverMemory first = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             DriverMemory second = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE)) {
            SplitVirtqueue q = new SplitVirtqueue("started");
            q.setSize(SIZE);
            q.setMemory(first.guestMemory(1));
            long[] r1 = rings(first);
            assertTrue(q.setAddresses(r1[0], r1[1], r1[2]));
            q.start();
            assertFalse(q.setMemory(second.guestMemory(1)));
            assertEquals(VirtqError.BAD_RING_ADDRESS, q.brokenReason());
        }
    }
}
