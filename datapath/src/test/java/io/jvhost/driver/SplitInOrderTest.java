package io.jvhost.driver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The split driver ring with IN_ORDER: descriptors are taken in table order (chains consecutive,
 * wrapping at the table's end), and one used entry naming the last head of a batch returns every
 * buffer of the batch in order — the device side read from the rings as a device would.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SplitInOrderTest {
    private static final long IN_ORDER = VirtioFeatures.bit(VirtioFeatures.F_IN_ORDER);
    private static final long EVENT_IDX = VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);

    private final DriverMemory mem = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);

    @AfterEach
    void close() {
        mem.close();
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 4, 256})
    void oneUsedEntryCompletesABatchInOrder(int size) {
        DriverVirtqueue q = new DriverVirtqueue(mem, size, IN_ORDER | EVENT_IDX, 0, 65530);
        Random rnd = new Random(size);
        int deviceAvail = 65530;
        int usedIdx = 65530;
        int expectHead = 0;
        long implied = 0;
        for (int round = 0; round < 5 * size + 10; round++) {
            List<Integer> heads = new ArrayList<>();
            List<Integer> lengths = new ArrayList<>();
            while (true) {
                int n = 1 + rnd.nextInt(Math.min(3, size));
                if (q.numFree() < n || (!heads.isEmpty() && rnd.nextInt(3) == 0)) {
                    break;
                }
                long[] a = new long[n];
                int[] l = new int[n];
                for (int k = 0; k < n; k++) {
                    a[k] = 0x1000L * (k + 1);
                    l[k] = 64;
                }
                int h = q.add(a, l, n, 0, false);
                assertEquals(expectHead, h, "IN_ORDER: the next chain starts right after the previous one");
                expectHead = (expectHead + n) % size;
                heads.add(h);
                lengths.add(n);
            }
            q.publish();
            // The device: every new avail entry, its chain consecutive in the table.
            int availIdx = VringAvail.idxAcquire(q.availRing());
            assertEquals((deviceAvail + heads.size()) & 0xffff, availIdx);
            for (int i = 0; i < heads.size(); i++) {
                int head = VringAvail.ring(q.availRing(), deviceAvail & (size - 1));
                assertEquals(heads.get(i), head);
                int d = head;
                for (int k = 0; k < lengths.get(i); k++) {
                    int f = VringDesc.flags(q.descRing(), (long) d * VringDesc.SIZE);
                    assertEquals(k + 1 < lengths.get(i), (f & VringDesc.F_NEXT) != 0);
                    if (k + 1 < lengths.get(i)) {
                        int next = VringDesc.next(q.descRing(), (long) d * VringDesc.SIZE);
                        assertEquals((d + 1) % size, next);
                        d = next;
                    }
                }
                deviceAvail = (deviceAvail + 1) & 0xffff;
            }
            // One used entry for the batch, at its first slot, naming its last head; used.idx moves by
            // the batch's size (virtio 1.2 §2.7.9).
            VringUsed.putElem(q.usedRing(), usedIdx & (size - 1), heads.get(heads.size() - 1), 777);
            usedIdx = (usedIdx + heads.size()) & 0xffff;
            VringUsed.idxRelease(q.usedRing(), usedIdx);
            for (int i = 0; i < heads.size(); i++) {
                long u = q.pollUsed();
                assertEquals((long) heads.get(i), u >>> 32);
                assertEquals(i == heads.size() - 1 ? 777 : 0, (int) u);
            }
            assertEquals(-1, q.pollUsed());
            assertEquals(size, q.numFree());
            implied += heads.size() - 1;
            assertEquals(implied, q.inOrderImplied());
        }
    }

    @Test
    void usedHeadNotInFlightIsRejected() {
        DriverVirtqueue q = new DriverVirtqueue(mem, 8, IN_ORDER, 0, 0);
        q.add(new long[] {0x1000}, new int[] {64}, 1, 0, false);
        q.add(new long[] {0x1000}, new int[] {64}, 1, 0, false);
        q.publish();
        VringUsed.putElem(q.usedRing(), 0, 5, 0);
        VringUsed.idxRelease(q.usedRing(), 1);
        assertThrows(IllegalStateException.class, q::pollUsed);
    }

    /** A device that moves used.idx by one for a batch of four (not by the batch's size) is caught. */
    @Test
    void batchLargerThanTheUsedIdxStepIsRejected() {
        DriverVirtqueue q = new DriverVirtqueue(mem, 8, IN_ORDER, 0, 0);
        for (int i = 0; i < 4; i++) {
            q.add(new long[] {0x1000}, new int[] {64}, 1, 0, false);
        }
        q.publish();
        VringUsed.putElem(q.usedRing(), 0, 3, 0);
        VringUsed.idxRelease(q.usedRing(), 1);
        IllegalStateException e = assertThrows(IllegalStateException.class, q::pollUsed);
        assertTrue(e.getMessage().contains("covering 4 buffers, but used.idx moved by only 1"), e.getMessage());
    }

    /** IN_ORDER asks for the call on the next used entry (the one a batch starts with). */
    @Test
    void inOrderAsksForTheNextUsedEntry() {
        DriverVirtqueue q = new DriverVirtqueue(mem, 8, IN_ORDER | EVENT_IDX, 0, 0);
        for (int i = 0; i < 4; i++) {
            q.add(new long[] {0x1000}, new int[] {64}, 1, 0, false);
        }
        q.publish();
        assertFalse(q.enableCallbacksAfter(4));
        assertEquals(0, VringAvail.usedEvent(q.availRing(), 8));
        VringUsed.putElem(q.usedRing(), 0, 3, 0);
        VringUsed.idxRelease(q.usedRing(), 4);
        assertTrue(VringUsed.needEvent(VringAvail.usedEvent(q.availRing(), 8), 4, 0), "the device calls for the batch");
        assertTrue(q.enableCallbacks());
    }
}
