package io.jvhost.memory;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.SplitVirtqueue;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The back-end maps the driver's memfd itself (a second mapping), as with QEMU. */
class MappedGuestMemoryTest {

    @Test
    void backendMapsMemfdAndWalksRingsThroughItsOwnMapping() {
        try (DriverMemory dm = DriverMemory.memfd("jvhost-test-ram", 1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            DriverVirtqueue dq = new DriverVirtqueue(dm, 64, 0, 0, 0);
            long buf = dm.alloc(8192, 4096) + 4096 - 32; // spans the 2nd/3rd... boundary below
            GuestMemory gm = GuestMemory.map(dm.regions(4));
            try {
                assertNotEquals(dm.ram().address(), gm.regionHostAddr(0), "a separate mapping");
                SplitVirtqueue q = new SplitVirtqueue("mapped");
                q.setSize(64);
                q.setMemory(gm);
                assertTrue(q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()),
                        dm.userAddress(dq.usedGpa())));
                q.start();
                dm.at(buf, 64).fill((byte) 0x5a);
                dq.add(new long[] {buf}, new int[] {64}, 1, 0, false);
                dq.publish();
                Chain c = new Chain(arena, 4);
                assertEquals(SplitVirtqueue.CHAIN, q.next(c));
                assertEquals(64, c.readableBytes());
                for (int i = 0; i < c.readableCount(); i++) {
                    int r = regionOfHost(gm, c.readableBase(i));
                    MemorySegment seg = gm.regionSegment(r);
                    long off = c.readableBase(i) - gm.regionHostAddr(r);
                    for (long k = 0; k < c.readableLen(i); k++) {
                        assertEquals((byte) 0x5a, seg.get(ValueLayout.JAVA_BYTE, off + k));
                    }
                }
                q.pushUsed(c.head(), 0);
                assertEquals(((long) c.head() << 32), dq.pollUsed(), "used element written through the back-end's mapping");
            } finally {
                gm.close();
            }
        }
    }

    @Test
    void unalignedMmapOffset() {
        try (DriverMemory dm = DriverMemory.memfd("jvhost-test-off", 3 * 4096, 0)) {
            dm.ram().set(ValueLayout.JAVA_LONG_UNALIGNED, 4096 + 100, 0x1122334455667788L);
            GuestMemory gm = GuestMemory.map(List.of(new MemoryRegion(0x10000, 4096, 0x7000_0000L, 4096 + 100, dm.fd())));
            try {
                assertEquals(0x1122334455667788L, gm.regionSegment(0).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                assertEquals(gm.regionHostAddr(0), gm.gpaToHost(0x10000, 4096));
            } finally {
                gm.close();
            }
        }
    }

    static int regionOfHost(GuestMemory gm, long host) {
        for (int r = 0; r < gm.regionCount(); r++) {
            long h = gm.regionHostAddr(r);
            if (host >= h && host < h + gm.region(r).size()) {
                return r;
            }
        }
        throw new AssertionError("host address outside the back-end's mappings");
    }
}
