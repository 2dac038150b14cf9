package io.jvhost.engine;

import io.jvhost.stats.Counter;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.UnixSocket;
import io.jvhost.stats.DropReason;
import io.jvhost.virtq.RingSetup;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Disabling TX (SET_VRING_ENABLE 0): frames the driver posted while the ring was enabled still go
 * out, later ones are discarded. Found with DPDK virtio-user on two queue pairs: at port stop it
 * disables every ring and then asks GET_VRING_BASE, and the 256 frames the worker had not reached
 * yet were dropped although testpmd had counted them as sent.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class TxDisableTest {
    private static final int RING = 64;
    private static final int HDR = 12; // VERSION_1
    private static final int FRAME = 60;

    @Test
    void framesPostedBeforeTheDisableAreSentLaterOnesDiscarded() throws Exception {
        int[] sp = UnixSocket.socketPair(); // stands in for the tap: frames arrive as header + frame bytes
        int kick = EventFd.create(0, true);
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1);
        try (DriverMemory mem = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             Arena arena = Arena.ofConfined()) {
            Fds.setNonBlocking(sp[0], true);
            QueuePairProxy w = QueuePairProxy.withOwnWorker("txdis", 0, sp[0], WorkerConfig.defaults(), RING);
            try {
                w.setFeatures(features, 1500);
                DriverVirtqueue dq = new DriverVirtqueue(mem, RING, features, 0, 0);
                long buf = mem.alloc(HDR + FRAME, 64);
                mem.at(buf, HDR + FRAME).fill((byte) 0);
                RingSetup rc = new RingSetup(RING, mem.userAddress(dq.descGpa()), mem.userAddress(dq.availGpa()),
                        mem.userAddress(dq.usedGpa()), 0, features, false, 0, kick, -1, -1, true);
                w.setMemory(mem.guestMemory(1));
                // The worker thread is not started yet: call() runs each task right here, so nothing
                // consumes the ring between posting and disabling.
                w.startRing(QueuePair.TX, rc);
                for (int i = 0; i < 5; i++) {
                    assertTrue(dq.add(new long[]{buf}, new int[]{HDR + FRAME}, 1, 0, false) >= 0);
                }
                dq.publish();
                w.setRingEnabled(QueuePair.TX, false);
                assertEquals(5, w.counters().get(Counter.TX_FRAMES), "posted while enabled: sent");
                assertEquals(0, w.counters().drops(DropReason.TX_RING_DISABLED));
                assertEquals(5L * (HDR + FRAME), readAll(sp[1], arena), "all five reached the tap side");
                assertEquals(5, usedCount(dq));

                // Posted after the disable: discarded (consumed, used with length 0), as the spec says.
                w.start();
                for (int i = 0; i < 3; i++) {
                    assertTrue(dq.add(new long[]{buf}, new int[]{HDR + FRAME}, 1, 0, false) >= 0);
                }
                dq.publish();
                EventFd.signal(kick);
                // The drops are counted per chain and the used entries published after the batch:
                // wait for both.
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                int used = 0;
                while ((w.counters().drops(DropReason.TX_RING_DISABLED) < 3 || used < 3) && System.nanoTime() < deadline) {
                    used += usedCount(dq);
                    Thread.sleep(10);
                }
                used += usedCount(dq);
                assertEquals(3, w.counters().drops(DropReason.TX_RING_DISABLED));
                assertEquals(5, w.counters().get(Counter.TX_FRAMES));
                assertEquals(0, readAll(sp[1], arena), "nothing more reached the tap side");
                assertEquals(3, used);
            } finally {
                w.close();
            }
        } finally {
            Fds.closeQuietly(sp[0]);
            Fds.closeQuietly(sp[1]);
            Fds.closeQuietly(kick);
        }
    }

    private static long readAll(int fd, Arena arena) {
        Fds.setNonBlocking(fd, true);
        MemorySegment b = arena.allocate(4096);
        long total = 0;
        long n;
        while ((n = Fds.read(fd, b, b.byteSize())) > 0) {
            total += n;
        }
        return total;
    }

    private static int usedCount(DriverVirtqueue dq) {
        int n = 0;
        while (dq.pollUsed() != -1) {
            n++;
        }
        return n;
    }
}
