package io.jvhost.virtq;

import org.junit.jupiter.api.Test;

import static io.jvhost.virtq.VringDesc.F_INDIRECT;
import static io.jvhost.virtq.VringDesc.F_NEXT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * {@link SplitVirtqueue#prefetch} only reads: it takes nothing, reports nothing, survives every
 * hostile descriptor (the error comes from {@link SplitVirtqueue#next} when it gets there), and never
 * reads outside the guest's regions.
 */
class PrefetchTest {

    @Test
    void takesNothingAndChangesNothing() {
        try (RawRing r = new RawRing(8, 0, 1, 16)) {
            for (int i = 0; i < 4; i++) {
                r.desc(i, r.dataGpa + 256L * i, 200, 0, 0);
                r.mem.at(r.dataGpa + 256L * i, 200).fill((byte) (i + 1));
                r.offer(i);
            }
            r.q.prefetch(64, 128);
            r.q.prefetch(64, 4096);
            assertEquals(4, r.q.pending());
            for (int i = 0; i < 4; i++) {
                assertEquals(SplitVirtqueue.CHAIN, r.next());
                assertEquals(i, r.chain.head());
                assertEquals(200, r.chain.readableBytes());
            }
            assertEquals(SplitVirtqueue.NONE, r.next());
            assertEquals(0, r.q.prefetch(64, 128), "nothing waiting: nothing touched");
        }
    }

    @Test
    void hostileDescriptorsAreSkippedAndReportedByNextOnly() {
        try (RawRing r = new RawRing(8, HostileGuestTest.INDIRECT, 1, 16)) {
            r.desc(0, 0x7fff_ffff_0000L, 64, 0, 0);             // outside every region
            r.desc(1, r.dataGpa, -1, 0, 0);                       // length 0xffffffff
            r.desc(2, r.dataGpa + 4000, 4096, 0, 0);              // runs past the end of the data page
            r.desc(3, r.dataGpa, 16, F_INDIRECT, 0);              // indirect: not followed
            r.desc(4, r.dataGpa, 64, F_NEXT, 99);                 // next out of range
            for (int i = 0; i < 5; i++) {
                r.offer(i);
            }
            r.offer(8);                                            // head out of range
            r.q.prefetch(64, 256);
            assertNull(r.q.brokenReason(), "prefetch reports nothing");
            assertEquals(6, r.q.pending());
            assertEquals(SplitVirtqueue.BROKEN, r.next());
            assertEquals(VirtqError.BUFFER_OUTSIDE_MEMORY, r.q.brokenReason(), r.q.brokenMessage());
        }
    }

    @Test
    void availIndexJumpIsLeftToNext() {
        try (RawRing r = new RawRing(8, 0, 1, 16)) {
            r.avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) 100);
            assertEquals(0, r.q.prefetch(64, 128));
            assertNull(r.q.brokenReason());
            assertEquals(SplitVirtqueue.BROKEN, r.next());
            assertEquals(VirtqError.AVAIL_INDEX_JUMP, r.q.brokenReason());
        }
    }
}
