package io.jvhost.vhostuser;

import static org.junit.jupiter.api.Assertions.*;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Client mode: jvhost connects to the front-end's socket and reconnects with back-off when it goes away. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ClientModeTest {

    private static int acceptWithin(int lfd, int ms) {
        assertNotEquals(0, Poll.poll(lfd, Poll.POLLIN, ms), "jvhost did not connect within " + ms + " ms");
        return UnixSocket.accept(lfd);
    }

    @Test
    void reconnectsWithBackoffWhenTheFrontEndRestarts() throws Exception {
        String path = "/tmp/jvhost-cm-" + System.nanoTime() + ".sock";
        RecordingBackend backend = new RecordingBackend(1);
        int kick = EventFd.create(0, true);
        int call = EventFd.create(0, true);
        // Before the first attempt: a test thread delayed after connect() must not shorten the back-off measured.
        long t0 = System.nanoTime();
        try (DriverMemory mem = DriverMemory.memfd("guest", 1 << 20, DriverMemory.DEFAULT_GPA_BASE);
             VhostUserClientMode cm = VhostUserClientMode.connect("cm", path, backend, FeatureSet.all())) {
            // nobody listens yet: it retries, backing off (100, 200, 400, 800 ms ...)
            ProtocolFixture.awaitTrue(() -> cm.failedAttempts() >= 3, 3000, "three failed attempts");
            assertTrue(System.nanoTime() - t0 >= TimeUnit.MILLISECONDS.toNanos(250), "back-off between attempts");
            assertTrue(cm.failedAttempts() <= 5, "backing off, not spinning: " + cm.failedAttempts());
            assertEquals(0, cm.connects());
            DriverVirtqueue vq = new DriverVirtqueue(mem, 256, 0, 0, 0);
            for (int round = 1; round <= 3; round++) {
                // the front-end (re)starts: a fresh listening socket at the same path
                int lfd = UnixSocket.listen(path, 1);
                boolean listening = true;
                try {
                    int fd = acceptWithin(lfd, 7000);
                    try (VhostUserClient c = VhostUserClient.onFd(fd)) {
                        c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
                        c.setMemTable(List.of(mem.region()));
                        c.setupRing(1, vq, kick, call);
                        c.setVringEnable(1, true);
                        assertTrue(backend.isRunning(1));
                        assertTrue(cm.sessionActive());
                        assertEquals(round, cm.connects());
                        // Stop listening before the session ends: jvhost's retry (100 ms later) must
                        // not find this round's listener, however late this thread runs.
                        Fds.closeQuietly(lfd);
                        Files.deleteIfExists(Path.of(path));
                        listening = false;
                    }
                    // the front-end goes away: jvhost resets the device and tries again
                    backend.awaitResets(round, 10_000);
                } finally {
                    if (listening) {
                        Fds.closeQuietly(lfd);
                        Files.deleteIfExists(Path.of(path));
                    }
                }
                Thread.sleep(150); // QEMU takes a while to come back
            }
            assertFalse(backend.isRunning(1));
            assertNull(backend.fdProblem());
        } finally {
            Fds.closeQuietly(kick);
            Fds.closeQuietly(call);
            try {
                Files.deleteIfExists(Path.of(path));
            } catch (IOException e) {
                // best effort
            }
        }
    }

    @Test
    void closeEndsTheSessionAndStopsRetrying() throws Exception {
        String path = "/tmp/jvhost-cm-" + System.nanoTime() + ".sock";
        RecordingBackend backend = new RecordingBackend(1);
        int lfd = UnixSocket.listen(path, 1);
        try {
            VhostUserClientMode cm = VhostUserClientMode.connect("cm2", path, backend, FeatureSet.all());
            int fd = acceptWithin(lfd, 3000);
            try (VhostUserClient c = VhostUserClient.onFd(fd)) {
                assertNotEquals(0, c.getFeatures());
                cm.close();
                assertTrue(c.awaitClosed(2000), "jvhost closed its end");
                assertEquals(1, backend.resets());
                assertEquals(0, Poll.poll(lfd, Poll.POLLIN, 300), "no reconnect after close");
            }
        } finally {
            Fds.closeQuietly(lfd);
            Files.deleteIfExists(Path.of(path));
        }
    }
}
