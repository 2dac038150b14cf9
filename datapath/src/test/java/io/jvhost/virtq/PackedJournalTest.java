package io.jvhost.virtq;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.logging.Level;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link RingJournal}: a back-end that died leaves the front-end with a stale packed-ring base (QEMU
 * re-sends the base of the last start, having nothing better); the restarted device resumes where
 * the journal says the used position was. A batch of used descriptors the dead device wrote but
 * did not publish (killed before the store of its first descriptor's flags) is written again from
 * the journal and published, so the driver sees every completion once. A base that is not the last
 * start's, another ring, or a journal the ring contradicts: the front-end's base.
 */
class PackedJournalTest {
    static {
        Logger.getLogger(PackedVirtqueue.class.getName()).setLevel(Level.OFF);
    }

    private static final int FRESH = 0x8000_8000;

    private static PackedVirtqueue device(PackedRing r, RingJournal.Slot slot, int base) {
        PackedVirtqueue q = new PackedVirtqueue("journal-test");
        q.setSize(r.size);
        q.setMemory(r.guest);
        q.setRings(r.desc, r.driverEvent, r.deviceEvent);
        q.setJournal(slot);
        q.setBase(base);
        q.start();
        return q;
    }

    /** The driver offers {@code n} one-descriptor buffers, the device uses each, the driver reads them back. */
    private static int exchange(PackedRing r, PackedVirtqueue q, int firstId, int n) {
        for (int i = 0; i < n; i++) {
            int id = (firstId + i) % r.size;
            r.offer(id, r.dataGpa, 64, 0);
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(id, r.chain.head());
            q.pushUsed(id, 0);
            assertEquals(1, r.poll());
            assertEquals(id, r.lastId);
        }
        return (firstId + n) % r.size;
    }

    @Test
    void aRestartedDeviceGivenTheLastStartsBaseAgainResumesWhereItWas() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(2).slot(1);
            PackedVirtqueue dead = device(r, slot, FRESH);
            int id = exchange(r, dead, 0, 11); // past the end of the ring: slot 3, wrap counter 0
            // the back-end dies: no GET_VRING_BASE; the driver goes on offering
            r.offer(id, r.dataGpa, 64, 0);
            r.offer((id + 1) % 8, r.dataGpa, 64, 0);
            PackedVirtqueue q = device(r, slot, FRESH);
            assertEquals(PackedEvent.offWrap(3, false) * 0x1_0001, q.base(), "resumed at slot 3 of the second lap");
            for (int i = 0; i < 2; i++) {
                assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
                assertEquals((id + i) % 8, r.chain.head());
                q.pushUsed(r.chain.head(), 0);
                assertEquals(1, r.poll());
            }
            assertEquals(DeviceQueue.NONE, q.next(r.chain));
            exchange(r, q, (id + 2) % 8, 20);
            assertNull(q.brokenReason());
        }
    }

    @Test
    void withoutTheJournalTheStaleBaseStalls() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            PackedVirtqueue dead = device(r, null, FRESH);
            int id = exchange(r, dead, 0, 11);
            r.offer(id, r.dataGpa, 64, 0);
            PackedVirtqueue q = device(r, null, FRESH);
            assertEquals(DeviceQueue.NONE, q.next(r.chain), "slot 0 is the driver's next lap: nothing for wrap 1");
        }
    }

    @Test
    void aBatchWrittenButNotPublishedIsPublishedAndTheDeviceResumesAfterIt() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            PackedVirtqueue dead = device(r, slot, FRESH);
            int id = exchange(r, dead, 0, 5);
            r.offer(id, r.dataGpa, 64, 0);
            r.offer(id + 1, r.dataGpa, 64, 0);
            assertEquals(DeviceQueue.CHAIN, dead.next(r.chain));
            assertEquals(DeviceQueue.CHAIN, dead.next(r.chain));
            dead.addUsed(id, 10);
            dead.addUsed(id + 1, 20);
            // killed before publishUsed: the second descriptor has its flags, the first not
            assertEquals(0, r.poll(), "not published");
            PackedVirtqueue q = device(r, slot, FRESH);
            assertEquals(PackedEvent.offWrap(7, true) * 0x1_0001, q.base(), "after the batch");
            assertEquals(1, r.poll());
            assertEquals(id, r.lastId);
            assertEquals(10, r.lastLen);
            assertEquals(1, r.poll());
            assertEquals(id + 1, r.lastId);
            assertEquals(20, r.lastLen);
            assertEquals(DeviceQueue.NONE, q.next(r.chain), "nothing taken twice");
            exchange(r, q, (id + 2) % 8, 10);
            assertNull(q.brokenReason());
        }
    }

    @Test
    void diedAfterThePublishingStoreResumesAfterTheBatch() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            PackedVirtqueue dead = device(r, slot, FRESH);
            exchange(r, dead, 0, 5);
            // the driver read the batch and offered the next lap's buffer at slot 5 ... not yet: slot 5 is used
            PackedVirtqueue q = device(r, slot, FRESH);
            assertEquals(PackedEvent.offWrap(5, true) * 0x1_0001, q.base());
            exchange(r, q, 5, 9);
            assertNull(q.brokenReason());
        }
    }

    @Test
    void anElidedInOrderRunResumesPastTheRun() {
        long inOrder = 1L << io.jvhost.virtio.VirtioFeatures.F_IN_ORDER;
        try (PackedRing r = new PackedRing(8, inOrder, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            PackedVirtqueue dead = device(r, slot, FRESH);
            dead.setFeatures(inOrder);
            for (int id = 0; id < 3; id++) {
                r.offer(id, r.dataGpa, 64, 0);
                assertEquals(DeviceQueue.CHAIN, dead.next(r.chain));
            }
            for (int id = 0; id < 3; id++) {
                dead.addUsed(id, 0); // read-only, length 0: one used descriptor for the run
            }
            dead.publishUsed();
            assertEquals(3, r.poll());
            r.offer(3, r.dataGpa, 64, 0);
            PackedVirtqueue q = device(r, slot, FRESH);
            assertEquals(PackedEvent.offWrap(3, true) * 0x1_0001, q.base());
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(3, r.chain.head());
        }
    }

    @Test
    void aBaseOtherThanTheLastStartsIsTheFrontEndsWord() {
        try (PackedRing r = new PackedRing(3, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            PackedVirtqueue q1 = device(r, slot, FRESH);
            // the lap of PackedResumeTest: a two-descriptor chain and one more; slot 1 still looks available
            r.offer(0, new long[]{r.dataGpa, r.dataGpa + 8}, new int[]{8, 8}, new int[]{0, 0});
            r.offer(1, r.dataGpa + 64, 8, 0);
            for (int i = 0; i < 2; i++) {
                assertEquals(DeviceQueue.CHAIN, q1.next(r.chain));
                q1.pushUsed(r.chain.head(), 0);
                r.poll();
            }
            int base = q1.stop();
            assertEquals(0, base);
            PackedVirtqueue q = device(r, slot, base);
            assertEquals(0, q.base());
            assertEquals(DeviceQueue.NONE, q.next(r.chain));
            r.offer(2, r.dataGpa + 128, 8, 0);
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(2, r.chain.head());
        }
    }

    @Test
    void anotherRingIsTheFrontEndsWord() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8); PackedRing other = new PackedRing(8, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            exchange(r, device(r, slot, FRESH), 0, 3);
            // a new guest (or a reset driver) with its ring elsewhere, fresh base as at the last start
            PackedVirtqueue q = device(other, slot, FRESH);
            assertEquals(FRESH, q.base());
            exchange(other, q, 0, 3);
        }
    }

    @Test
    void aJournalTheRingContradictsIsIgnored() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            exchange(r, device(r, slot, FRESH), 0, 4);
            // says slot 2 of the first lap, which the device used in this lap
            slot.begin(0, r.desc.address(), r.driverEvent.address(), r.deviceEvent.address(), 8, FRESH,
                    PackedEvent.offWrap(2, true));
            PackedVirtqueue q = device(r, slot, FRESH);
            assertEquals(FRESH, q.base());
        }
    }

    /**
     * A front-end that re-initialised its ring at the same place (DPDK's virtio-user does on every
     * reconnect, with the fresh base 0x8000): the journal's last used descriptor is not in the
     * ring, so the fresh base holds.
     */
    @ParameterizedTest
    @ValueSource(ints = {3, 11, 13})
    void aRingReinitialisedInPlaceIsNotTakenForTheOldOne(int before) {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            RingJournal.Slot slot = RingJournal.inMemory(1).slot(0);
            exchange(r, device(r, slot, FRESH), 0, before);
            r.desc.fill((byte) 0);
            r.availIdx = 0;
            r.availWrap = true;
            r.usedIdx = 0;
            r.usedWrap = true;
            java.util.Arrays.fill(r.slotsOf, -1);
            r.order.clear();
            for (int id = 0; id < 6; id++) {
                r.offer(id, r.dataGpa, 64, 0);
            }
            PackedVirtqueue q = device(r, slot, 0x8000);
            assertEquals(FRESH, q.base(), "the fresh ring's base");
            for (int id = 0; id < 6; id++) {
                assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
                assertEquals(id, r.chain.head());
                q.pushUsed(id, 0);
                assertEquals(1, r.poll());
            }
            assertNull(q.brokenReason());
        }
    }

    @Test
    void theFileOutlivesTheProcessesMapping(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("vm.sock.rings");
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            int id = exchange(r, device(r, RingJournal.open(file, 2).slot(1), FRESH), 0, 9);
            assertTrue(Files.size(file) >= 2 * RingJournal.SLOT_BYTES);
            r.offer(id, r.dataGpa, 64, 0);
            PackedVirtqueue q = device(r, RingJournal.open(file, 2).slot(1), FRESH);
            assertEquals(DeviceQueue.CHAIN, q.next(r.chain));
            assertEquals(id, r.chain.head());
        }
    }
}
