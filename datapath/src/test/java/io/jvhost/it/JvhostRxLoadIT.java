package io.jvhost.it;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import io.jvhost.vhostuser.FeatureSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.nio.file.Path;
import java.time.Duration;

import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Sustained RX load into DPDK testpmd's virtio-user ({@code rxonly}, polling, no interrupts): a UDP
 * flood from the tap's netns for a few seconds, more than the ring holds, so the ring runs dry over
 * and over and jvhost lives on the front-end's kicks.
 *
 * <p>With guest GSO negotiated ({@code --enable-lro}) and a ring lending less than 64 KiB of
 * buffers (queue_size=32 × 2 KiB mbufs), jvhost once waited for the whole ring before every read:
 * one frame per kick round trip (batch size 1.0, an {@code rx_no_buffers} per frame, ~20 kfps while
 * the tap dropped the rest). It must read in batches, and every frame the tap accepted must reach
 * testpmd.
 */
@Tag("privileged")
@Timeout(300)
class JvhostRxLoadIT {
    private static final String PEER_IP = "10.77.0.9";
    private static final String PEER_MAC = "02:00:00:00:00:09";
    private static final double LOAD_SECONDS = 3;
    @RegisterExtension
    final Scratch scratch = new Scratch("jvl", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(false, DpdkTestpmd::unavailableReason);
    }

    @Test
    void guestGsoWithLessThan64KiBPostedKeepsReadingInBatches() throws Exception {
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 1, FeatureSet.all())) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            ns.neighbour(tap, PEER_IP, PEER_MAC);
            try (DpdkTestpmd rx = DpdkTestpmd.virtioUser(socket, false, "rxonly", 64, 1, 32, Duration.ZERO, "--enable-lro")) {
                assertTrue(Jvhost.await(jv::sessionActive, Duration.ofSeconds(30)), "virtio-user connected");
                Thread.sleep(500); // testpmd polls from now on
                long features = jv.device().negotiatedFeatures();
                assertTrue(VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF)
                        && VirtioFeatures.guestGso(features), "MRG_RXBUF + guest GSO negotiated: 0x" + Long.toHexString(features));

                long f0 = jv.total(Counter.RX_FRAMES);
                long b0 = jv.total(Counter.RX_BATCHES);
                long n0 = jv.total(Counter.RX_NO_BUFFERS);
                NetNs.LinkStats before = ns.linkStats(tap);
                Cmd.Result flood = flood(ns, LOAD_SECONDS);
                NetNs.LinkStats after = ns.linkStats(tap);
                long accepted = after.txPackets() - before.txPackets();
                System.out.println(flood.output().strip() + ", tap accepted " + accepted);
                assertTrue(flood.ok(), flood.output());
                assertTrue(accepted > 5000, "the load reached the tap: " + accepted);
                assertTrue(Jvhost.await(() -> jv.total(Counter.RX_FRAMES) - f0 >= accepted, Duration.ofSeconds(10)),
                        "every frame the tap accepted was read: " + accepted + "\n" + jv.table());

                long frames = jv.total(Counter.RX_FRAMES) - f0;
                long batches = jv.total(Counter.RX_BATCHES) - b0;
                long noBuffers = jv.total(Counter.RX_NO_BUFFERS) - n0;
                double perBatch = (double) frames / Math.max(1, batches);
                String summary = String.format("frames %d, batches %d (%.1f per batch), rx_no_buffers %d, %.0f frames/s",
                        frames, batches, perBatch, noBuffers, frames / LOAD_SECONDS);
                System.out.println("jvhost RX under load: " + summary);
                assertTrue(perBatch >= 3, "RX must read in batches, not one frame per kick: " + summary + "\n" + jv.table());
                // rx_no_buffers is not bounded here: while the worker spins (adaptive spin / busy-poll)
                // every empty look at the ring counts, so it measures polling, not waiting per frame.
                // Batches of several frames are the evidence that RX does not wait after each frame.

                Thread.sleep(500);
                DpdkTestpmd.PortStats st = rx.stop().get(0);
                System.out.println("testpmd rxonly: " + st);
                assertTrue(st.rx() >= frames, "testpmd received what jvhost delivered: " + st + " vs " + frames);
                assertEquals(0, st.rxDropped(), "testpmd rx-dropped");
            }
            assertEquals(0, jv.totalDrops(), jv.table());
            assertEquals(0, jv.stats().get(0).drops(DropReason.RX_TOO_BIG), jv.table());
        }
    }

    /** Runs {@link UdpFlood} in its own JVM inside the netns (it needs the netns's routes and neighbour). */
    private static Cmd.Result flood(NetNs ns, double seconds) throws Exception {
        String java = ProcessHandle.current().info().command().orElse(System.getProperty("java.home") + "/bin/java");
        String cp = Path.of(UdpFlood.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
        return Cmd.run(Duration.ofSeconds(60), "ip", "netns", "exec", ns.name(), java, "-cp", cp,
                UdpFlood.class.getName(), PEER_IP, "9", Double.toString(seconds));
    }
}
