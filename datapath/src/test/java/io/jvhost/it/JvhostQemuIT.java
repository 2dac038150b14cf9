package io.jvhost.it;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueStats;
import io.jvhost.vhostuser.FeatureSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static io.jvhost.it.QemuGuest.BOOT_TIMEOUT;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A Debian kernel's own virtio_net driver, in QEMU (TCG), on a jvhost device: QEMU's vhost-user
 * front-end ↔ jvhost (in this JVM, server mode, 2 queue pairs) ↔ tap in a private netns
 * (10.77.0.1) ↔ the kernel. One boot checks everything: the negotiated features as the guest sees
 * them and as jvhost got them, ping both ways, several MiB of TCP each way with checksums, and
 * traffic on both queue pairs. Two more boots run the same traffic through Linux's other receive
 * buffer layouts (big packets, small buffers).
 */
@Tag("privileged")
@Timeout(600)
class JvhostQemuIT {
    static final Duration STEP = Duration.ofMinutes(3);
    private static final int MIB = 4;

    /** The datapath features jvhost offers and a Linux guest on QEMU must end up using. */
    static final int[] DATAPATH_FEATURES = {F_VERSION_1, NET_F_MRG_RXBUF, RING_F_EVENT_IDX, RING_F_INDIRECT_DESC, NET_F_CSUM, NET_F_GUEST_CSUM,
            NET_F_HOST_TSO4, NET_F_HOST_TSO6, NET_F_HOST_ECN, NET_F_HOST_UFO, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_ECN, NET_F_GUEST_UFO, NET_F_MTU,
            VirtioFeatures.NET_F_GUEST_ANNOUNCE};

    @RegisterExtension
    final Scratch scratch = new Scratch("jvq", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, QemuGuest::unavailableReason);
    }

    @Test
    void linuxGuestOnTwoQueuePairsPingsAndMovesTcpBothWays() throws Exception {
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 2, FeatureSet.all())) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            try (NetNs.TcpSink sink = ns.listen(5001);
                 QemuGuest g = QemuGuest.builder(socket).name("jvhost-mq").queues(2).hostMtu(1500)
                         .run("ping", "tcp-send", "serve").param("mib", MIB).param("port", 5001).start()) {
                long guest = g.awaitFeatures(BOOT_TIMEOUT);
                assertEquals("virtio_net", g.awaitMarker("DRIVER", STEP).first());
                QemuGuest.Marker q = g.awaitMarker("QUEUES", STEP);
                assertEquals(2, q.intField("rx"), "guest rx queues");
                assertEquals(2, q.intField("tx"), "guest tx queues");
                checkFeatures(guest, jv, true);

                bothWays(ns, sink, g, jv);

                // Both queue pairs carry traffic. Which pair a flow uses is the guest's (XPS) and the
                // tap's (flow hash) choice: more short connections (each a new flow) until pair 1 had some.
                byte[] small = new byte[64 << 10];
                new Random(7).nextBytes(small);
                for (int i = 0; i < 24 && !bothPairsUsed(jv); i++) { // each flow lands on pair 1 with ~1/2: 2^-24 to miss
                    ns.send(GUEST_IP, 5001, small, STEP);
                    assertEquals(NetNs.md5(small), g.awaitMarker("RX-MD5", STEP).first(), "short stream " + i);
                }
                assertTrue(bothPairsUsed(jv), "both queue pairs carried frames\n" + jv.table());
                assertTrue(jv.total(Counter.TX_BYTES) >= 2L * (MIB << 20), jv.table());
                assertTrue(jv.total(Counter.RX_BYTES) >= (long) MIB << 20, jv.table());
                System.out.println("jvhost counters after the run:\n" + jv.table());
            }
        }
    }

    /**
     * On a guest running {@code ping,tcp-send,serve} with MIB MiB: guest → host ping, guest → host TCP
     * into {@code sink}, host → guest ping, host → guest TCP into the guest's sink, the guest's
     * source → host; every stream's MD5 compared.
     */
    static void bothWays(NetNs ns, NetNs.TcpSink sink, QemuGuest g, Jvhost jv) throws Exception {
        QemuGuest.Marker ping = g.awaitMarker("PING", STEP);
        assertEquals(0, ping.intField("rc"), g.tail(30) + "\n" + jv.table());
        assertEquals(ping.intField("sent"), ping.intField("received"));

        // guest → host TCP (guest TSO through jvhost into the tap)
        QemuGuest.Marker sent = g.awaitMarker("TX-MD5", STEP);
        NetNs.Received got = sink.await(STEP);
        assertEquals((long) MIB << 20, got.bytes(), jv.table());
        assertEquals(sent.first(), got.md5(), "guest → host stream intact");
        assertEquals(0, g.awaitMarker("TCP-SENT", STEP).intField("rc"));

        g.awaitMarker("SERVING", STEP);
        Cmd.Result hostPing = ns.ping(GUEST_IP, 3, Duration.ofMillis(200), Duration.ofSeconds(30));
        assertTrue(hostPing.ok() && hostPing.output().contains("3 packets received"), hostPing.output() + "\n" + jv.table());

        // host → guest TCP into the guest's sink (kernel TSO → the guest's receive buffers)
        byte[] data = new byte[MIB << 20];
        new Random(42).nextBytes(data);
        ns.send(GUEST_IP, 5001, data, STEP);
        QemuGuest.Marker rx = g.awaitMarker("RX-MD5", STEP);
        assertEquals(NetNs.md5(data), rx.first(), "host → guest stream intact\n" + jv.table());
        assertEquals(data.length, rx.intField("bytes"));

        NetNs.Received back = ns.receive(GUEST_IP, 5002, STEP);
        assertEquals(g.awaitSourceMarker(back.md5(), STEP).first(), back.md5(), "guest source stream intact");
        assertEquals((long) MIB << 20, back.bytes());
    }

    /**
     * Linux's other receive-buffer layouts with a real guest: without MRG_RXBUF but with guest TSO the
     * driver posts "big packets" (a header buffer chained to page-sized buffers, one 64 KiB frame per
     * chain); without guest GSO either it posts small buffers (one MTU-sized frame each).
     */
    @ParameterizedTest
    @ValueSource(strings = {"mrg-rxbuf", "mrg-rxbuf,guest-tso4,guest-tso6,guest-ecn,guest-ufo"})
    void linuxGuestReceiveLayoutsWithoutMergeableBuffers(String disabled) throws Exception {
        FeatureSet features = FeatureSet.all().without(disabled.split(","));
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 1, features)) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            try (NetNs.TcpSink sink = ns.listen(5001);
                 QemuGuest g = QemuGuest.builder(socket).name(disabled.contains("guest-tso") ? "jvhost-small-bufs" : "jvhost-big-bufs")
                         .hostMtu(1500).run("ping", "tcp-send", "serve").param("mib", MIB).param("port", 5001).start()) {
                long guest = g.awaitFeatures(BOOT_TIMEOUT);
                for (String name : disabled.split(",")) {
                    int b = VirtioFeatures.NAMES.get(name);
                    assertTrue(!has(guest, b) && !has(jv.device().negotiatedFeatures(), b), name + " is off");
                }
                assertTrue(has(guest, F_VERSION_1) && has(guest, RING_F_INDIRECT_DESC) && has(guest, NET_F_HOST_TSO4));
                bothWays(ns, sink, g, jv);
                System.out.println("jvhost counters without " + disabled + ":\n" + jv.table());
            }
        }
    }

    /**
     * QEMU with {@code packed=on}: the guest's virtio_net drives packed virtqueues on jvhost (the
     * format both sides negotiated), 2 queue pairs, mergeable RX buffers (the big-packet layout on
     * packed rings runs in JvhostMigrationIT), with the same traffic both ways, then QEMU stops and continues
     * the VM under a stream (the rings resume at the base jvhost returns).
     */
    @Test
    void linuxGuestOnPackedRings() throws Exception {
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 2, FeatureSet.all())) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            Path qmpSock = scratch.dir().resolve("qmp.sock");
            try (NetNs.TcpSink sink = ns.listen(5001);
                 QemuGuest g = QemuGuest.builder(socket).name("jvhost-packed").queues(2).packed(true).hostMtu(1500)
                         .run("ping", "tcp-send", "serve").param("mib", MIB).param("port", 5001)
                         .qemuArgs("-qmp", "unix:" + qmpSock + ",server=on,wait=off").start()) {
                long guest = g.awaitFeatures(BOOT_TIMEOUT);
                long negotiated = jv.device().negotiatedFeatures();
                assertTrue(has(guest, F_RING_PACKED), "guest uses packed rings: " + VirtioFeatures.describe(guest));
                assertTrue(has(negotiated, F_RING_PACKED), "jvhost runs packed rings: " + VirtioFeatures.describe(negotiated));
                bothWays(ns, sink, g, jv);
                byte[] small = new byte[64 << 10];
                new Random(8).nextBytes(small);
                for (int i = 0; i < 24 && !bothPairsUsed(jv); i++) {
                    ns.send(GUEST_IP, 5001, small, STEP);
                    assertEquals(NetNs.md5(small), g.awaitMarker("RX-MD5", STEP).first(), "short stream " + i);
                }
                assertTrue(bothPairsUsed(jv), "both queue pairs carried frames\n" + jv.table());

                // stop/cont while the host streams into the guest: GET_VRING_BASE, then the rings restart there
                byte[] data = new byte[MIB << 20];
                new Random(43).nextBytes(data);
                var send = ns.sendAsync(GUEST_IP, 5001, data, STEP);
                try (Qmp qmp = Qmp.connect(qmpSock, Duration.ofSeconds(30))) {
                    Thread.sleep(300);
                    qmp.execute("stop", null);
                    Thread.sleep(500);
                    qmp.execute("cont", null);
                }
                send.get();
                assertEquals(NetNs.md5(data), g.awaitMarker("RX-MD5", STEP).first(), "stream across stop/cont intact\n" + jv.table());
                assertEquals(0, jv.totalDrops(), jv.table());
                System.out.println("jvhost counters, packed rings:\n" + jv.table());
            }
        }
    }

    static boolean bothPairsUsed(Jvhost jv) {
        for (QueueStats s : jv.stats()) {
            if (s.get(Counter.TX_FRAMES) + s.get(Counter.RX_FRAMES) == 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * The guest's negotiated bits include every datapath feature jvhost offers (and MAC, STATUS,
     * which QEMU answers itself); jvhost's negotiated set is exactly the guest's, restricted to
     * what QEMU forwards to a vhost-user back-end — no bit the guest did not accept, none it did
     * accept missing.
     */
    static void checkFeatures(long guest, Jvhost jv, boolean mq) {
        long offered = jv.device().features();
        long negotiated = jv.device().negotiatedFeatures();
        List<String> missing = new ArrayList<>();
        for (int b : DATAPATH_FEATURES) {
            if (!has(guest, b)) {
                missing.add("guest:" + b);
            }
            if (!has(negotiated, b)) {
                missing.add("jvhost:" + b);
            }
        }
        for (int b : new int[]{NET_F_MAC, NET_F_STATUS}) {
            if (!has(guest, b)) {
                missing.add("guest:" + b);
            }
        }
        if (mq && (!has(guest, NET_F_MQ) || !has(negotiated, NET_F_MQ))) {
            missing.add("MQ");
        }
        String why = "guest " + VirtioFeatures.describe(guest) + "\njvhost offered " + VirtioFeatures.describe(offered)
                + "\njvhost negotiated " + VirtioFeatures.describe(negotiated);
        assertTrue(missing.isEmpty(), "missing " + missing + "\n" + why);
        long vhostBits = negotiated & ~bit(VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES);
        assertEquals(0, vhostBits & ~offered, "jvhost negotiated bits it never offered\n" + why);
        assertEquals(0, vhostBits & ~guest, "jvhost runs with bits the guest did not accept\n" + why);
        assertTrue(has(negotiated, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES), "protocol features\n" + why);
    }
}
