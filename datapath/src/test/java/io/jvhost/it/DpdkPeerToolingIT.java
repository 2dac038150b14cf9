package io.jvhost.it;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Random;

import static io.jvhost.it.QemuGuest.BOOT_TIMEOUT;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Proves the real-peer tooling (guest image, guest-vm, testpmd wrapper, {@link QemuGuest},
 * {@link DpdkTestpmd}, {@link NetNs}) against DPDK's own vhost-user back-end, which stands where
 * jvhost will: QEMU's Linux guest ↔ vhost-user ↔ DPDK net_vhost ↔ io-forward ↔ net_tap ↔ a tap in
 * a private netns. The jvhost tests use the same classes with jvhost in DPDK's place.
 */
@Tag("privileged")
@Timeout(900)
class DpdkPeerToolingIT {
    private static final Duration STEP = Duration.ofMinutes(3);
    @RegisterExtension
    final Scratch scratch = new Scratch("jvtp", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, DpdkTestpmd::unavailableReason, QemuGuest::unavailableReason);
    }

    @Test
    void linuxGuestPingsAndMovesTcpBothWaysThroughDpdkVhost() throws Exception {
        try (NetNs ns = NetNs.create();
             DpdkTestpmd backend = DpdkTestpmd.vhostBackend(socket, tap, false, 1)) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            try (NetNs.TcpSink sink = ns.listen(5001);
                 QemuGuest g = QemuGuest.builder(socket).name("dpdk-vhost").run("ping", "tcp-send", "serve")
                         .param("mib", 4).param("port", 5001).start()) {
                long features = g.awaitFeatures(BOOT_TIMEOUT);
                assertTrue((features & VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)) != 0, "VERSION_1 negotiated");
                assertTrue((features & VirtioFeatures.bit(VirtioFeatures.NET_F_MAC)) != 0, "MAC negotiated");
                assertEquals("virtio_net", g.awaitMarker("DRIVER", STEP).first());

                // guest → host ping
                QemuGuest.Marker ping = g.awaitMarker("PING", STEP);
                assertEquals(0, ping.intField("rc"), g.tail(30));
                assertEquals(ping.intField("sent"), ping.intField("received"));

                // guest → host TCP, checksums compared
                QemuGuest.Marker sent = g.awaitMarker("TX-MD5", STEP);
                NetNs.Received got = sink.await(STEP);
                assertEquals(4L << 20, got.bytes());
                assertEquals(sent.first(), got.md5(), "guest → host stream intact");
                assertEquals(0, g.awaitMarker("TCP-SENT", STEP).intField("rc"));

                // host → guest ping, from inside the netns
                g.awaitMarker("SERVING", STEP);
                Cmd.Result hostPing = ns.ping(GUEST_IP, 3, Duration.ofMillis(200), Duration.ofSeconds(30));
                assertTrue(hostPing.ok() && hostPing.output().contains("3 packets received"), hostPing.output());

                // host → guest TCP into the guest's sink
                byte[] data = new byte[2 << 20];
                new Random(42).nextBytes(data);
                ns.send(GUEST_IP, 5001, data, STEP);
                QemuGuest.Marker rx = g.awaitMarker("RX-MD5", STEP);
                assertEquals(NetNs.md5(data), rx.first(), "host → guest stream intact");
                assertEquals(data.length, rx.intField("bytes"));

                // guest's source → host
                NetNs.Received back = ns.receive(GUEST_IP, 5002, STEP);
                QemuGuest.Marker srcMd5 = g.awaitMarker("TX-MD5", STEP);
                assertEquals(srcMd5.first(), back.md5(), "guest source stream intact");
                assertEquals(4L << 20, back.bytes());
            }
            Map<Integer, DpdkTestpmd.PortStats> st = backend.stop();
            assertTrue(st.get(0).rx() > 0 && st.get(1).rx() > 0, "DPDK forwarded both ways: " + st);
        }
    }

    @Test
    void virtioUserTxonlyAndRxonlyCountsAgreeWithTheTap() throws Exception {
        try (NetNs ns = NetNs.create();
             DpdkTestpmd backend = DpdkTestpmd.vhostBackend(socket, tap, false, 1)) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            ns.neighbour(tap, "10.77.0.9", "02:00:00:00:00:09");

            // txonly: every frame virtio-user sends arrives on the tap.
            NetNs.LinkStats before = ns.linkStats(tap);
            long sent;
            try (DpdkTestpmd tx = DpdkTestpmd.virtioUser(socket, false, "txonly", 128, 1, Duration.ofSeconds(3))) {
                sent = tx.awaitStats(Duration.ofSeconds(60)).get(0).tx();
            }
            assertTrue(sent > 0, "virtio-user sent nothing");
            NetNs.LinkStats after = awaitRx(ns, before.rxPackets() + sent);
            assertEquals(sent, after.rxPackets() - before.rxPackets(), "tap rx vs virtio-user tx");
            assertEquals(sent * 128, after.rxBytes() - before.rxBytes(), "bytes");

            // rxonly: every frame the kernel sends out of the tap reaches virtio-user.
            int from = backend.logLines();
            try (DpdkTestpmd rx = DpdkTestpmd.virtioUser(socket, false, "rxonly", 64, 1, Duration.ZERO)) {
                backend.awaitLog("virtio is now ready for processing", from, Duration.ofSeconds(60));
                Thread.sleep(500);
                NetNs.LinkStats b = ns.linkStats(tap);
                ns.ping("10.77.0.9", 100, Duration.ofMillis(10), Duration.ofSeconds(5)); // nobody answers: that is fine
                NetNs.LinkStats a = ns.linkStats(tap);
                long kernelSent = a.txPackets() - b.txPackets();
                assertTrue(kernelSent >= 100, "kernel sent " + kernelSent);
                Thread.sleep(1000);
                long received = rx.stop().get(0).rx();
                assertEquals(kernelSent, received, "virtio-user rx vs tap tx");
            }
            backend.stop();
        }
    }

    /** QEMU as the vhost-user server, DPDK as a reconnecting client; QEMU is restarted and traffic resumes. */
    @Test
    void qemuServerRestartDpdkClientReconnects() throws Exception {
        try (NetNs ns = NetNs.create();
             DpdkTestpmd backend = DpdkTestpmd.vhostBackend(socket, tap, true, 1)) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            String firstMd5 = null;
            for (int round = 1; round <= 2; round++) {
                int from = backend.logLines();
                try (QemuGuest g = QemuGuest.builder(socket).server(true).name("qemu-server-" + round)
                        .run("serve").param("mib", 1).start()) {
                    g.awaitMarker("SERVING", BOOT_TIMEOUT);
                    backend.awaitLog("virtio is now ready for processing", from, STEP);
                    Cmd.Result p = ns.ping(GUEST_IP, 3, Duration.ofMillis(200), Duration.ofSeconds(30));
                    assertTrue(p.ok() && p.output().contains("3 packets received"), "round " + round + ": " + p.output());
                    NetNs.Received r = ns.receive(GUEST_IP, 5002, STEP);
                    assertEquals(g.awaitSourceMarker(r.md5(), STEP).first(), r.md5(), "round " + round);
                    assertNotEquals(firstMd5, r.md5());
                    firstMd5 = r.md5();
                }
                backend.awaitLog("vhost peer closed", from, STEP);
            }
            backend.stop();
        }
    }

    /** The back-end forwards asynchronously: wait (bounded) until the tap has seen {@code rxPackets}. */
    private NetNs.LinkStats awaitRx(NetNs ns, long rxPackets) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        NetNs.LinkStats s;
        while ((s = ns.linkStats(tap)).rxPackets() < rxPackets && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        return s;
    }
}
