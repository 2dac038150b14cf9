package io.jvhost.vhostuser;

import static org.junit.jupiter.api.Assertions.*;

import io.jvhost.driver.VhostUserClient;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Random requests (codes, sizes, payload bytes, fd counts) from a front-end that negotiated REPLY_ACK:
 * the session either answers or closes the connection, the control thread survives, the device is
 * never handed an invalid fd, and no fd is left behind.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RandomMessagesTest {

    @Test
    void randomMessagesNeverCrashOrLeak() {
        java.util.logging.Logger jul = java.util.logging.Logger.getLogger("io.jvhost.vhostuser");
        java.util.logging.Level saved = jul.getLevel();
        jul.setLevel(java.util.logging.Level.SEVERE); // thousands of expected warnings
        Random rnd = new Random(0x5eed);
        try (ProtocolFixture f = new ProtocolFixture(2)) {
            int[] fds = {f.eventFd(), f.eventFd(), f.mem.fd()};
            long[] ring = f.ringAddrs(ProtocolFixture.RING);
            VhostUserClient c = null;
            long before = -1;
            int sessions = 0;
            int answered = 0;
            try {
                for (int i = 0; i < 3000; i++) {
                    if (c == null) {
                        c = f.connectReady();
                        c.setupRing(0, ProtocolFixture.RING, 0, ring[0], ring[1], ring[2], fds[0], fds[1]);
                        sessions++;
                        if (before < 0) {
                            before = ProtocolFixture.openFds();
                        }
                    }
                    int req = rnd.nextInt(8) == 0 ? rnd.nextInt(1000) : 1 + rnd.nextInt(40);
                    byte[] payload = new byte[rnd.nextInt(4) == 0 ? rnd.nextInt(VhostUserMessage.MAX_PAYLOAD + 1)
                            : new int[] {0, 8, 12, 40, 264}[rnd.nextInt(5)]];
                    rnd.nextBytes(payload);
                    // mostly small values in the first words, so indexes and sizes are sometimes valid
                    if (payload.length >= 8 && rnd.nextBoolean()) {
                        payload[0] = (byte) rnd.nextInt(5);
                        payload[1] = payload[2] = payload[3] = 0;
                        payload[4] = (byte) (1 << rnd.nextInt(8));
                        payload[5] = payload[6] = payload[7] = 0;
                    }
                    int nfds = rnd.nextInt(4) == 0 ? 1 + rnd.nextInt(3) : 0;
                    int[] send = new int[nfds];
                    for (int k = 0; k < nfds; k++) {
                        send[k] = fds[rnd.nextInt(fds.length)];
                    }
                    try {
                        if (VhostUserMessage.hasReply(req)) {
                            c.send(req, 0, payload, send);
                            c.readReply();
                        } else {
                            c.sendAck(req, payload, send);
                        }
                        answered++;
                    } catch (VhostUserClient.Rejected e) {
                        answered++;
                    } catch (VhostUserClient.ConnectionLost e) {
                        c.close();
                        c = null;
                    }
                }
            } finally {
                if (c != null) {
                    c.close();
                }
                jul.setLevel(saved);
            }
            int n = sessions;
            ProtocolFixture.awaitTrue(() -> f.server.sessionsEnded() == n, 5000, "all sessions ended");
            assertTrue(f.server.running(), "control thread survived");
            assertNull(f.backend.fdProblem());
            assertTrue(answered > 1000, "most messages were answered: " + answered);
            System.out.println("random messages: " + answered + " answered over " + sessions + " sessions");
            long limit = before - 2; // the first session's two sockets are gone
            ProtocolFixture.awaitTrue(() -> ProtocolFixture.openFds() <= limit, 10_000,
                    "fds: " + ProtocolFixture.openFds() + " > " + limit);
            // and the device still works
            try (VhostUserClient ok = f.connectReady()) {
                ok.setMemTable(List.of(f.mem.region()));
                assertEquals(2, ok.getQueueNum());
            }
        }
    }
}
