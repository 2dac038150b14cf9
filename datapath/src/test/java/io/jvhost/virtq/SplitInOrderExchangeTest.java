package io.jvhost.virtq;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The split ring with IN_ORDER, device ({@link SplitVirtqueue}) and driver ({@link DriverVirtqueue})
 * over one shared memory: read-only and writable chains of one to three descriptors, completed by
 * the device in random order and published at random points, the 16-bit indices wrapping. The
 * device writes one used element per run of read-only chains and moves {@code used.idx} by the
 * run's length; the driver must get every buffer back exactly once, in the order it made them
 * available, writable ones with their exact lengths, and must have met runs ({@code inOrderImplied}).
 */
class SplitInOrderExchangeTest {
    private static final long FEATURES = 1L << VirtioFeatures.F_IN_ORDER;

    private record Posted(int head, boolean writable) {
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 8, 256})
    void everyBufferComesBackOnceInOrderWithItsLength(int size) {
        Random rnd = new Random(size * 31L + 7);
        try (DriverMemory dm = DriverMemory.allocate(4 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            int start = 65530;
            DriverVirtqueue dq = new DriverVirtqueue(dm, size, FEATURES, 0, start);
            SplitVirtqueue q = new SplitVirtqueue("exchange");
            q.setSize(size);
            q.setFeatures(FEATURES);
            q.setMemory(dm.guestMemory(1));
            q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()), dm.userAddress(dq.usedGpa()));
            q.setBase(start);
            q.start();
            Chain c = new Chain(arena, 8);
            long buf = dm.gpaBase() + dm.size() - 8192;

            ArrayDeque<Posted> posted = new ArrayDeque<>();
            int[] usedLen = new int[size];
            List<int[]> taken = new ArrayList<>(); // {head, length to use}
            long returned = 0;
            for (int round = 0; round < 400; round++) {
                // driver: post a few chains
                int adds = rnd.nextInt(4);
                for (int k = 0; k < adds; k++) {
                    int n = 1 + rnd.nextInt(Math.min(3, size));
                    if (dq.numFree() < n) {
                        break;
                    }
                    boolean writable = rnd.nextInt(4) == 0;
                    long[] a = new long[n];
                    int[] l = new int[n];
                    for (int i = 0; i < n; i++) {
                        a[i] = buf + 64L * i;
                        l[i] = 64;
                    }
                    int head = writable ? dq.add(a, l, 0, n, false) : dq.add(a, l, n, 0, false);
                    posted.add(new Posted(head, writable));
                }
                dq.publish();
                // device: take what is there, complete a random subset in random order, publish sometimes
                while (q.next(c) == DeviceQueue.CHAIN) {
                    boolean w = c.writableBytes() > 0;
                    taken.add(new int[] {c.head(), w ? 1 + rnd.nextInt(200) : 0});
                }
                int completions = taken.isEmpty() ? 0 : rnd.nextInt(taken.size() + 1);
                for (int k = 0; k < completions; k++) {
                    int[] t = taken.remove(rnd.nextInt(taken.size()));
                    usedLen[t[0]] = t[1];
                    q.addUsed(t[0], t[1]);
                    if (rnd.nextInt(5) == 0) {
                        q.publishUsed();
                    }
                }
                q.publishUsed();
                assertFalse(q.isBroken(), String.valueOf(q.brokenMessage()));
                // driver: reclaim everything published, in order
                for (long u; (u = dq.pollUsed()) != -1; ) {
                    Posted p = posted.poll();
                    assertTrue(p != null, "a buffer came back that was never made available");
                    int head = (int) (u >>> 32);
                    assertEquals(p.head(), head, "IN_ORDER: buffers come back in the order made available");
                    assertEquals(p.writable() ? usedLen[head] : 0, (int) u, "the length of head " + head
                            + (p.writable() ? " (writable: never part of a run)" : " (read-only)"));
                    returned++;
                }
            }
            // drain: complete everything still taken (any order), then everything posted
            while (q.next(c) == DeviceQueue.CHAIN) {
                taken.add(new int[] {c.head(), c.writableBytes() > 0 ? 5 : 0});
            }
            while (!taken.isEmpty()) {
                int[] t = taken.remove(rnd.nextInt(taken.size()));
                usedLen[t[0]] = t[1];
                q.addUsed(t[0], t[1]);
            }
            q.publishUsed();
            for (long u; (u = dq.pollUsed()) != -1; ) {
                Posted p = posted.poll();
                assertEquals(p.head(), (int) (u >>> 32));
                returned++;
            }
            assertTrue(posted.isEmpty(), posted.size() + " buffers never came back");
            assertEquals(size, dq.numFree());
            assertEquals(q.base(), VringUsed.idxAcquire(dq.usedRing()), "used.idx counts every chain used");
            assertTrue(returned > 100, "exchanged " + returned);
            if (size > 1) {
                assertTrue(dq.inOrderImplied() > 0, "the device wrote runs of read-only buffers as one element");
            }
        }
    }
}
