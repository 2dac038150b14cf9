package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.nativ.Fds;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.Vring;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link RxEngine#releaseWindow} when a chain taken after the window's was already completed.
 * Found by {@code EngineFuzzTest#rx} (input {@code EngineFuzzTestInputs/rx/bad-chain-after-window-then-restart}):
 * with MRG_RXBUF the window held a small buffer (head 0) waiting for more, the next chain (head 1)
 * was unusable and returned at once with length 0; the ring stop then rewound the avail index by
 * the window's one chain — onto head 1's position. The restart (at {@code used.idx}) took head 1
 * again, so it was used twice, and head 0 was never returned (the guest lost that buffer).
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class RxEngineReleaseWindowTest {
    private static final int RING = 8;
    private static final int HDR = VirtioNetHdr.SIZE;

    @Test
    void aWindowThatIsNotTheLastChainsTakenIsReturnedNotRewound() {
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
        int[] sock = SeqPacketPair.open();
        try (DriverMemory mem = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            Fds.setNonBlocking(sock[0], true);
            DriverVirtqueue dq = new DriverVirtqueue(mem, RING, features, 0, 0);
            Vring ring = new Vring("rx-release");
            SplitVirtqueue q = (SplitVirtqueue) ring.queue();
            q.setSize(RING);
            q.setFeatures(features);
            q.setMemory(mem.guestMemory(1));
            assertTrue(q.setAddresses(mem.userAddress(dq.descGpa()), mem.userAddress(dq.availGpa()),
                    mem.userAddress(dq.usedGpa())));
            q.setBase(0);
            q.start();
            RxEngine rx = new RxEngine(0, ring, arena, new QueueCounters(), new QueueLatency(), RING);
            rx.configure(sock[0], HDR, true, false, 1500);

            // head 0: a writable buffer smaller than a full frame (the window waits for more);
            // head 1: a device-readable buffer, unusable for RX (returned at once, length 0)
            long small = mem.alloc(256, 64);
            long ro = mem.alloc(64, 64);
            int h0 = dq.add(new long[] {small}, new int[] {256}, 0, 1, false);
            int h1 = dq.add(new long[] {ro}, new int[] {64}, 1, 0, false);
            dq.publish();
            rx.process(64, System.nanoTime());
            assertTrue(rx.needsBuffers(), "the window should wait for more buffers");

            // QueuePairWorker.stopRing, then a start as after SET_VRING_BASE/ADDR/KICK
            rx.releaseWindow();
            int base = q.stop();
            List<Integer> used = new ArrayList<>();
            long u;
            while ((u = dq.pollUsed()) != -1) {
                used.add((int) (u >>> 32));
            }
            assertEquals(2, used.size(), "both chains returned: " + used);
            assertTrue(used.contains(h0) && used.contains(h1), "heads returned: " + used);
            assertEquals(2, base, "the stop reports a base past every completed chain");

            q.setBase(base);
            q.start();
            assertEquals(SplitVirtqueue.NONE, q.next(new Chain(arena, 4)), "nothing is taken a second time");
        } finally {
            Fds.closeQuietly(sock[0]);
            Fds.closeQuietly(sock[1]);
        }
    }
}
