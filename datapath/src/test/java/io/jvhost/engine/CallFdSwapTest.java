package io.jvhost.engine;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.UnixSocket;
import io.jvhost.virtq.RingSetup;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A new call eventfd on a running ring is signalled once. QEMU starts a ring (SET_VRING_KICK)
 * before it sends the ring's new SET_VRING_CALL, so after {@code stop}/{@code cont} or a guest
 * driver reload (seen in JvhostGuestReloadIT) the ring briefly runs with the previous call fd,
 * which nobody reads any more; a call made then would be lost and, with EVENT_IDX, not repeated.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class CallFdSwapTest {
    private static final int RING = 64;

    @Test
    void newCallFdOfARunningRingIsSignalledOnceOfAStoppedRingNot() throws Exception {
        int[] sp = UnixSocket.socketPair(); // stands in for the tap
        int kick = EventFd.create(0, true);
        int oldCall = EventFd.create(0, true);
        int newCall = EventFd.create(0, true);
        int laterCall = EventFd.create(0, true);
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1);
        try (DriverMemory mem = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE)) {
            Fds.setNonBlocking(sp[0], true);
            // Not started: call() runs each task on this thread, so nothing else signals meanwhile.
            QueuePairProxy w = QueuePairProxy.withOwnWorker("callswap", 0, sp[0], WorkerConfig.defaults(), RING);
            try {
                w.setFeatures(features, 1500);
                DriverVirtqueue dq = new DriverVirtqueue(mem, RING, features, 0, 0);
                RingSetup rc = new RingSetup(RING, mem.userAddress(dq.descGpa()), mem.userAddress(dq.availGpa()),
                        mem.userAddress(dq.usedGpa()), 0, features, false, 0, kick, oldCall, -1, true);
                w.setMemory(mem.guestMemory(1));
                w.startRing(QueuePair.RX, rc);
                assertEquals(0, EventFd.drain(oldCall), "starting a ring calls nobody");

                w.setCallFd(QueuePair.RX, newCall);
                assertEquals(1, EventFd.drain(newCall), "the new call fd of a running ring is signalled once");
                assertEquals(0, EventFd.drain(oldCall), "the old one is left alone");

                w.stopRing(QueuePair.RX);
                w.setCallFd(QueuePair.RX, laterCall);
                assertEquals(0, EventFd.drain(laterCall), "a stopped ring's new call fd is not signalled");
            } finally {
                w.close();
            }
        } finally {
            for (int fd : new int[]{sp[0], sp[1], kick, oldCall, newCall, laterCall}) {
                Fds.closeQuietly(fd);
            }
        }
    }
}
