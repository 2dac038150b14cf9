package io.jvhost.it;

import io.jvhost.stats.Counter;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.vhostuser.FeatureSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;
import java.time.Duration;

import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DPDK 22.11 testpmd with {@code net_virtio_user} as the front-end of a jvhost device (in this JVM,
 * server mode) whose tap sits in a private netns: txonly frames all arrive on the tap, and frames
 * the kernel sends out of the tap all reach testpmd in rxonly mode. Three counts must agree each
 * time: testpmd's port statistics, jvhost's counters and the tap's counters in the netns.
 */
@Tag("privileged")
@Timeout(300)
class JvhostTestpmdIT {
    private static final String PEER_IP = "10.77.0.9";
    private static final String PEER_MAC = "02:00:00:00:00:09";
    private static final int PKT_LEN = 128;
    @RegisterExtension
    final Scratch scratch = new Scratch("jvd", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, DpdkTestpmd::unavailableReason);
    }

    @Test
    void virtioUserTxonlyAndRxonlyCountsAgreeOnAllThreeSides() throws Exception {
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 1, FeatureSet.all())) {
            txAndRxCountsAgree(ns, jv, (mode, len, d) -> DpdkTestpmd.virtioUser(socket, false, mode, len, 1, d));
        }
    }

    /**
     * The same exchange on each ring format virtio-user can ask for — split and packed rings, with
     * and without IN_ORDER, on 1 and 2 queue pairs; the format negotiated is the one asked for.
     */
    @ParameterizedTest
    @CsvSource({"split,1", "split+in-order,1", "packed,1", "packed+in-order,1", "split+in-order,2", "packed,2",
        "packed+in-order,2"})
    void virtioUserOnEachRingFormat(String rings, int pairs) throws Exception {
        boolean packed = rings.contains("packed");
        boolean inOrder = rings.contains("in-order");
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, pairs, FeatureSet.all())) {
            txAndRxCountsAgree(ns, jv, (mode, len, d) -> {
                DpdkTestpmd t = DpdkTestpmd.virtioUser(socket, false, mode, len, pairs, packed, inOrder, d);
                assertTrue(Jvhost.await(jv::sessionActive, Duration.ofSeconds(30)), "virtio-user connected");
                assertTrue(Jvhost.await(() -> jv.device().negotiatedFeatures() != 0, Duration.ofSeconds(30)), "features set");
                long f = jv.device().negotiatedFeatures();
                assertEquals(packed, VirtioFeatures.has(f, VirtioFeatures.F_RING_PACKED), "packed rings: " + VirtioFeatures.describe(f));
                assertEquals(inOrder, VirtioFeatures.has(f, VirtioFeatures.F_IN_ORDER), "IN_ORDER: " + VirtioFeatures.describe(f));
                assertEquals(pairs > 1, VirtioFeatures.has(f, VirtioFeatures.NET_F_MQ), "MQ: " + VirtioFeatures.describe(f));
                return t;
            });
            if (pairs > 1) {
                for (var q : jv.stats()) {
                    assertTrue(q.get(Counter.TX_FRAMES) > 0, "queue pair " + q.queuePair() + " carried TX\n" + jv.table());
                }
            }
        }
    }

    /** Starts testpmd's virtio-user in a mode ({@code txonly}, {@code rxonly}) with frames of a length. */
    interface Front {
        DpdkTestpmd start(String mode, int pktLen, Duration duration) throws Exception;
    }

    /**
     * txonly: every frame virtio-user sends passes jvhost and arrives on the tap; rxonly: every
     * frame the kernel sends out of the tap passes jvhost and reaches virtio-user. testpmd's,
     * jvhost's and the tap's counts agree, nothing dropped.
     */
    private void txAndRxCountsAgree(NetNs ns, Jvhost jv, Front front) throws Exception {
        ns.moveIn(tap).address(tap, HOST_IP + "/24");
        ns.neighbour(tap, PEER_IP, PEER_MAC);

        NetNs.LinkStats tapBefore = ns.linkStats(tap);
        long jvTx0 = jv.total(Counter.TX_FRAMES);
        long sent;
        try (DpdkTestpmd tx = front.start("txonly", PKT_LEN, Duration.ofSeconds(3))) {
            DpdkTestpmd.PortStats st = tx.awaitStats(Duration.ofSeconds(90)).get(0);
            sent = st.tx();
            System.out.println("testpmd txonly: " + st);
        }
        assertTrue(sent > 1000, "virtio-user sent only " + sent + "\n" + jv.table());
        assertTrue(Jvhost.await(() -> jv.total(Counter.TX_FRAMES) - jvTx0 >= sent, Duration.ofSeconds(10)),
                "jvhost TX vs testpmd tx " + sent + "\n" + jv.table());
        NetNs.LinkStats tapAfter = awaitTapRx(ns, tapBefore.rxPackets() + sent);
        assertEquals(sent, jv.total(Counter.TX_FRAMES) - jvTx0, "jvhost TX frames vs testpmd tx\n" + jv.table());
        assertEquals(sent, tapAfter.rxPackets() - tapBefore.rxPackets(), "tap rx vs testpmd tx\n" + jv.table());
        assertEquals(sent * PKT_LEN, tapAfter.rxBytes() - tapBefore.rxBytes(), "tap rx bytes");
        assertEquals(0, jv.totalDrops(), jv.table());
        assertTrue(Jvhost.await(() -> !jv.sessionActive(), Duration.ofSeconds(10)), "session ended with testpmd");

        try (DpdkTestpmd rx = front.start("rxonly", 64, Duration.ZERO)) {
            assertTrue(Jvhost.await(jv::sessionActive, Duration.ofSeconds(30)), "virtio-user connected");
            Thread.sleep(500); // testpmd polls from now on
            long jvRx0 = jv.total(Counter.RX_FRAMES);
            NetNs.LinkStats b = ns.linkStats(tap);
            ns.ping(PEER_IP, 200, Duration.ofMillis(5), Duration.ofSeconds(5)); // nobody answers: that is fine
            NetNs.LinkStats a = ns.linkStats(tap);
            long kernelSent = a.txPackets() - b.txPackets();
            assertTrue(kernelSent >= 200, "kernel sent " + kernelSent);
            assertTrue(Jvhost.await(() -> jv.total(Counter.RX_FRAMES) - jvRx0 >= kernelSent, Duration.ofSeconds(10)),
                    "jvhost RX vs tap tx " + kernelSent + "\n" + jv.table());
            Thread.sleep(500);
            DpdkTestpmd.PortStats st = rx.stop().get(0);
            System.out.println("testpmd rxonly: " + st);
            assertEquals(kernelSent, jv.total(Counter.RX_FRAMES) - jvRx0, "jvhost RX frames vs tap tx\n" + jv.table());
            assertEquals(kernelSent, st.rx(), "testpmd rx vs tap tx\n" + jv.table());
            assertEquals(0, st.rxDropped(), "testpmd rx-dropped");
        }
        assertEquals(0, jv.totalDrops(), jv.table());
        System.out.println("jvhost counters after the run:\n" + jv.table());
    }

    /**
     * Two queue pairs: virtio-user negotiates MQ and sends on both TX queues; frames the kernel
     * sends to several addresses (several flows, spread by the tap over its queues) all arrive.
     */
    @Test
    void virtioUserOnTwoQueuePairs() throws Exception {
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 2, FeatureSet.all())) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            for (int i = 0; i < 4; i++) {
                ns.neighbour(tap, "10.77.0." + (9 + i), PEER_MAC);
            }
            NetNs.LinkStats tapBefore = ns.linkStats(tap);
            long sent;
            try (DpdkTestpmd tx = DpdkTestpmd.virtioUser(socket, false, "txonly", PKT_LEN, 2, Duration.ofSeconds(3))) {
                DpdkTestpmd.PortStats st = tx.awaitStats(Duration.ofSeconds(90)).get(0);
                sent = st.tx();
                System.out.println("testpmd txonly, 2 queues: " + st);
            }
            assertTrue(sent > 1000, "virtio-user sent only " + sent + "\n" + jv.table());
            NetNs.LinkStats tapAfter = awaitTapRx(ns, tapBefore.rxPackets() + sent);
            assertEquals(sent, jv.total(Counter.TX_FRAMES), "jvhost TX frames vs testpmd tx\n" + jv.table());
            assertEquals(sent, tapAfter.rxPackets() - tapBefore.rxPackets(), "tap rx vs testpmd tx\n" + jv.table());
            for (var q : jv.stats()) {
                assertTrue(q.get(Counter.TX_FRAMES) > 0, "queue pair " + q.queuePair() + " carried TX\n" + jv.table());
            }
            assertTrue(Jvhost.await(() -> !jv.sessionActive(), Duration.ofSeconds(10)), "session ended with testpmd");

            try (DpdkTestpmd rx = DpdkTestpmd.virtioUser(socket, false, "rxonly", 64, 2, Duration.ZERO)) {
                assertTrue(Jvhost.await(jv::sessionActive, Duration.ofSeconds(30)), "virtio-user connected");
                Thread.sleep(500);
                long jvRx0 = jv.total(Counter.RX_FRAMES);
                NetNs.LinkStats b = ns.linkStats(tap);
                for (int i = 0; i < 4; i++) {
                    ns.ping("10.77.0." + (9 + i), 50, Duration.ofMillis(5), Duration.ofSeconds(3));
                }
                long kernelSent = ns.linkStats(tap).txPackets() - b.txPackets();
                assertTrue(kernelSent >= 200, "kernel sent " + kernelSent);
                assertTrue(Jvhost.await(() -> jv.total(Counter.RX_FRAMES) - jvRx0 >= kernelSent, Duration.ofSeconds(10)),
                        "jvhost RX vs tap tx " + kernelSent + "\n" + jv.table());
                Thread.sleep(500);
                DpdkTestpmd.PortStats st = rx.stop().get(0);
                System.out.println("testpmd rxonly, 2 queues: " + st);
                assertEquals(kernelSent, jv.total(Counter.RX_FRAMES) - jvRx0, "jvhost RX frames vs tap tx\n" + jv.table());
                assertEquals(kernelSent, st.rx(), "testpmd rx vs tap tx\n" + jv.table());
            }
            assertEquals(0, jv.totalDrops(), jv.table());
            System.out.println("jvhost counters, 2 queue pairs:\n" + jv.table());
        }
    }

    /** jvhost writes asynchronously: wait (bounded) until the tap has seen {@code rxPackets}. */
    private NetNs.LinkStats awaitTapRx(NetNs ns, long rxPackets) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        NetNs.LinkStats s;
        while ((s = ns.linkStats(tap)).rxPackets() < rxPackets && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        return s;
    }
}
