package io.jvhost.it;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DPDK 22.11 virtio-user as the vhost-user server ({@code net_virtio_user0,path=SOCK,server=1}) in
 * txonly mode and jvhost (the shipped jar, a separate process) as its client ({@code --client}),
 * each side restarted while the other keeps running:
 * <ol>
 *   <li>jvhost SIGKILLed and started again: virtio-user accepts the new connection and re-sends
 *       its running rings (with base 0; jvhost resumes at the ring's used index), frames reach the
 *       tap again;</li>
 *   <li>testpmd SIGKILLed and started again: jvhost notices, reconnects with its back-off and every
 *       frame the new testpmd sends reaches the tap (counts equal).</li>
 * </ol>
 * The tap is a persistent one in the test's netns (jvhost runs there too), so its counters span
 * all jvhost generations.
 */
@Tag("privileged")
@Timeout(300)
class JvhostRestartTestpmdIT {
    private static final int PKT_LEN = 128;
    /** From a restart to frames on the tap: JVM or EAL start, client back-off (≤ 5 s), a loaded machine. */
    private static final Duration RECOVERY = Duration.ofSeconds(60);
    @RegisterExtension
    final Scratch scratch = new Scratch("jvt", "virtio-user.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();
    private String rings;

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(false, JvhostProcess::unavailableReason, DpdkTestpmd::unavailableReason);
    }

    /**
     * On DPDK's default rings (split, IN_ORDER) and on packed rings with and without IN_ORDER: a
     * packed ring's base after a back-end restart comes from the ring journal when virtio-user
     * re-sends the base of the last start.
     */
    @ParameterizedTest
    @ValueSource(strings = {"split", "packed", "packed-inorder"})
    void virtioUserServerAndJvhostClientEachRestartedTrafficResumes(String rings) throws Exception {
        this.rings = rings;
        long t0 = System.nanoTime();
        NetNs ns = NetNs.create();
        JvhostProcess jv = null;
        DpdkTestpmd tp = null;
        try {
            Cmd.ok("ip", "-n", ns.name(), "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr");
            ns.address(tap, HOST_IP + "/24");

            // jvhost first: it retries until testpmd listens (virtio-user blocks its start-up until a back-end connects).
            jv = startJvhost(ns, "jvhost-client-1");
            jv.awaitLog("cannot connect to " + socket, 0, JvhostProcess.START_TIMEOUT);
            tp = testpmd();
            jv.awaitLog("connected to " + socket, 0, RECOVERY);
            awaitTapRx(ns, 1000, "first connection", jv, tp);

            // 1. jvhost crashes and comes back; testpmd keeps sending into its ring meanwhile.
            int tpLine = tp.logLines();
            jv.kill();
            long stalled = ns.linkStats(tap).rxPackets();
            Thread.sleep(1_000);
            assertEquals(stalled, ns.linkStats(tap).rxPackets(), "nothing reaches the tap without jvhost");
            long restarted = System.nanoTime();
            jv = startJvhost(ns, "jvhost-client-2");
            jv.awaitLog("connected to " + socket, 0, RECOVERY);
            awaitTapRx(ns, 1000, "jvhost restarted", jv, tp);
            System.out.printf("jvhost SIGKILLed and restarted: frames on the tap again after %d ms%n",
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - restarted));
            System.out.println("testpmd around the kill:\n" + tp.tail(tp.logLines() - tpLine));
            System.out.println(rings + ": jvhost-client-2 resumed " + (jv.logged("as the ring journal says", 0)
                    ? "where the ring journal said (virtio-user re-sent the last start's base)"
                    : jv.logged("journal does not fit the ring", 0)
                    ? "at virtio-user's fresh base (it re-initialised its ring; the journal did not fit it)"
                    : jv.logged("resuming at", 0) ? "at used.idx (virtio-user gave a stale base)" : "at the given base"));
            assertFalse(rings.startsWith("packed") && jv.logged("as the ring journal says", 0),
                    "virtio-user re-initialises its packed rings on a reconnect: the old ring's journal must not apply\n" + jv.tail(30));

            // 2. testpmd crashes and comes back; jvhost keeps running and reconnects.
            int jvLine = jv.logLines();
            tp.crash();
            jv.awaitLog("front-end went away", jvLine, RECOVERY);
            Thread.sleep(500); // frames jvhost took before the end are on the tap by now
            long before = ns.linkStats(tap).rxPackets();
            restarted = System.nanoTime();
            // DPDK 22.11 virtio-user in server mode does not replace a socket file left by a crashed
            // testpmd: it fails with "failed to bind to SOCK: Address already in use; remove it and
            // try again". Whoever restarts it removes the file first (jvhost meanwhile only sees
            // ECONNREFUSED and keeps retrying).
            assertTrue(Files.exists(socket), "a SIGKILLed virtio-user server leaves its socket file behind");
            tp.close();
            tp = null;
            try (DpdkTestpmd refused = testpmd()) {
                throw new AssertionError("virtio-user started on a stale socket file: DPDK changed, update the test and docs\n"
                        + refused.tail(20));
            } catch (AssertionError e) {
                if (e.getMessage() == null || !e.getMessage().contains("Address already in use; remove it and try again")) {
                    throw e;
                }
            }
            Files.delete(socket);
            tp = testpmd();
            jv.awaitLog("connected to " + socket, jvLine, RECOVERY);
            awaitTapRx(ns, 1000, "testpmd restarted", jv, tp);
            System.out.printf("testpmd SIGKILLed and restarted: frames on the tap again after %d ms%n",
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - restarted));
            Thread.sleep(2_000);
            long sent = tp.stop().get(0).tx();
            System.out.println("testpmd after the reconnect sent " + sent + " frames");
            assertTrue(Jvhost.await(() -> ns.linkStats(tap).rxPackets() - before >= sent, Duration.ofSeconds(10)),
                    "every frame of the new testpmd reaches the tap");
            assertEquals(sent, ns.linkStats(tap).rxPackets() - before, "tap rx vs testpmd tx after the reconnect\n" + jv.tail(20));

            assertFalse(rings.startsWith("packed") && jv.logged("as the ring journal says", 0),
                    "a new testpmd process (same addresses, new memory) is not the old ring\n" + jv.tail(30));
            assertEquals(0, jv.terminate(Duration.ofSeconds(10)), "clean exit on SIGTERM\n" + jv.tail(30));
            assertTrue(!jv.logged("virtqueue broken", 0), "no broken queue\n" + jv.tail(40));
            System.out.printf("JvhostRestartTestpmdIT[%s]: wall time %d s%n", rings, TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t0));
        } finally {
            if (tp != null) {
                tp.close();
            }
            if (jv != null) {
                jv.close();
            }
            Cmd.quiet("ip", "-n", ns.name(), "link", "del", tap);
            ns.close();
        }
    }

    private DpdkTestpmd testpmd() throws Exception {
        return rings.equals("split") ? DpdkTestpmd.virtioUser(socket, true, "txonly", PKT_LEN, 1, Duration.ZERO)
                : DpdkTestpmd.virtioUser(socket, true, "txonly", PKT_LEN, 1, true, rings.endsWith("-inorder"), Duration.ZERO);
    }

    private JvhostProcess startJvhost(NetNs ns, String name) throws Exception {
        return JvhostProcess.start(name, ns, "--client", "--socket-path=" + socket, "--tap=" + tap);
    }

    /** Waits until the tap has received at least {@code frames} more frames. */
    private void awaitTapRx(NetNs ns, long frames, String what, JvhostProcess jv, DpdkTestpmd tp) throws Exception {
        long base = ns.linkStats(tap).rxPackets();
        assertTrue(Jvhost.await(() -> ns.linkStats(tap).rxPackets() >= base + frames, RECOVERY),
                what + ": frames reach the tap\n" + jv.tail(30) + "\n" + tp.tail(30));
    }
}
