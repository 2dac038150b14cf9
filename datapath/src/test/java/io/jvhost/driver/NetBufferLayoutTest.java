package io.jvhost.driver;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.SplitVirtqueue;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The device sees Linux-shaped buffers the way the net engine expects them. */
class NetBufferLayoutTest {

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void linuxLayoutsWalkAsExpected(boolean indirect) {
        long features = indirect ? 1L << VirtioFeatures.RING_F_INDIRECT_DESC : 0;
        try (DriverMemory dm = DriverMemory.allocate(4 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            DriverVirtqueue dq = new DriverVirtqueue(dm, 256, features, 32, 0);
            SplitVirtqueue q = new SplitVirtqueue("layouts");
            q.setSize(256);
            q.setFeatures(features);
            q.setMemory(dm.guestMemory(2));
            assertTrue(q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()),
                    dm.userAddress(dq.usedGpa())));
            q.setBase(0);
            q.start();
            Chain c = new Chain(arena, 64);
            long[] a = new long[32];
            int[] l = new int[32];

            long tx = dm.alloc(NetBufferLayout.txBufferSize(1514), 64);
            int n = NetBufferLayout.txInline(tx, 1514, NetBufferLayout.HDR_LEN, a, l);
            dq.add(a, l, n, 0, indirect && n > 1);
            n = NetBufferLayout.txSeparateHeader(tx, 60, NetBufferLayout.HDR_LEN_LEGACY, a, l);
            dq.add(a, l, n, 0, indirect);
            long small = dm.alloc(NetBufferLayout.rxSmallBufferSize(NetBufferLayout.HDR_LEN), 64);
            n = NetBufferLayout.rxSmall(small, NetBufferLayout.HDR_LEN, a, l);
            dq.add(a, l, 0, n, false);
            long big = dm.alloc(NetBufferLayout.rxBigBufferSize(), 4096);
            n = NetBufferLayout.rxBig(big, NetBufferLayout.HDR_LEN, a, l);
            dq.add(a, l, 0, n, indirect);
            long page = dm.alloc(NetBufferLayout.rxMergeableBufferSize(), 4096);
            n = NetBufferLayout.rxMergeable(page, a, l);
            dq.add(a, l, 0, n, false);
            dq.publish();

            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(1, c.readableCount());
            assertEquals(12 + 1514, c.readableBytes());
            assertEquals(dm.hostAddress(NetBufferLayout.txInlineHeaderGpa(tx, 12)), c.readableBase(0));
            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(2, c.readableCount());
            assertEquals(10, c.readableLen(0));
            assertEquals(60, c.readableLen(1));
            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(0, c.readableCount());
            assertEquals(12 + 1518, c.writableBytes());
            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(NetBufferLayout.BIG_DESCRIPTORS, c.writableCount());
            assertEquals(12 + 4096 - 16 + 17 * 4096, c.writableBytes());
            assertEquals(SplitVirtqueue.CHAIN, q.next(c));
            assertEquals(1, c.writableCount());
            assertEquals(4096 - 64 - 320, c.writableBytes());
            assertEquals(SplitVirtqueue.NONE, q.next(c));
            assertTrue(dq.numFree() < 256);
            // return the chains (heads in avail order), the driver reclaims every descriptor
            for (int i = 0; i < 5; i++) {
                q.addUsed(VringAvailPeek.head(dq, i), 0);
            }
            q.publishUsed();
            for (int i = 0; i < 5; i++) {
                assertTrue(dq.pollUsed() != -1);
            }
            assertEquals(-1, dq.pollUsed());
            assertEquals(256, dq.numFree());
        }
    }

    /** Reads the driver's own avail ring (what the device took, in order). */
    static final class VringAvailPeek {
        static int head(DriverVirtqueue dq, int slot) {
            return io.jvhost.virtq.VringAvail.ring(dq.availRing(), slot);
        }
    }
}
