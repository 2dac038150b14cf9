package io.jvhost.it;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.stats.Counter;
import io.jvhost.vhostuser.FeatureSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;

import static io.jvhost.it.JvhostQemuIT.STEP;
import static io.jvhost.it.QemuGuest.BOOT_TIMEOUT;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * QEMU as the vhost-user server ({@code -chardev socket,server=on}) and jvhost in client mode
 * ({@link io.jvhost.vhostuser.VhostUserClientMode}): the guest's traffic works, then QEMU is killed
 * in the middle of a host → guest transfer and started again on the same socket; jvhost reconnects
 * on its own and traffic resumes (ping both ways, TCP both ways with checksums).
 */
@Tag("privileged")
@Timeout(600)
class JvhostQemuReconnectIT {
    private static final int MIB = 2;
    @RegisterExtension
    final Scratch scratch = new Scratch("jvr", "qemu.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, QemuGuest::unavailableReason);
    }

    /** On split rings, and on packed rings (QEMU {@code packed=on}: the new QEMU's rings start afresh). */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void qemuServerRestartedMidTransferJvhostClientReconnects(boolean packed) throws Exception {
        this.packed = packed;
        try (NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.client(socket, tap, 1, FeatureSet.all())) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            String before;

            // Round 1: everything works; then QEMU dies while the host is sending to the guest.
            QemuGuest g = guest("qemu-server-1");
            try (NetNs.TcpSink sink = ns.listen(5001)) {
                long guest = g.awaitFeatures(BOOT_TIMEOUT);
                JvhostQemuIT.checkFeatures(guest, jv, false);
                assertEquals(packed, VirtioFeatures.has(guest, VirtioFeatures.F_RING_PACKED), "packed rings");
                before = traffic(ns, sink, g, jv, "round 1");
                assertEquals(1, jv.client().connects(), "one connection so far");

                long rx0 = jv.total(Counter.RX_BYTES);
                byte[] big = new byte[64 << 20];
                new Random(3).nextBytes(big);
                Thread bg = Thread.ofVirtual().start(() -> {
                    try {
                        ns.send(GUEST_IP, 5001, big, Duration.ofSeconds(60));
                    } catch (Exception | AssertionError expected) {
                        // the guest is killed mid-stream: this connection cannot finish
                    }
                });
                assertTrue(Jvhost.await(() -> jv.total(Counter.RX_BYTES) > rx0 + (1 << 20), Duration.ofSeconds(60)),
                        "the transfer got going\n" + jv.table());
                g.close(); // QEMU gone mid-transfer: the socket closes under a running session
                assertTrue(Jvhost.await(() -> !jv.sessionActive(), Duration.ofSeconds(10)), "session ended");
                bg.interrupt();
            } finally {
                g.close();
            }

            // Round 2: a new QEMU on the same socket; jvhost reconnects by itself.
            try (NetNs.TcpSink sink = ns.listen(5001);
                 QemuGuest g2 = guest("qemu-server-2")) {
                g2.awaitMarker("READY", BOOT_TIMEOUT);
                assertEquals(packed, VirtioFeatures.has(g2.awaitFeatures(STEP), VirtioFeatures.F_RING_PACKED), "packed rings");
                assertEquals(2, jv.client().connects(), "jvhost reconnected once");
                assertTrue(jv.sessionActive());
                String after = traffic(ns, sink, g2, jv, "round 2");
                assertNotEquals(before, after, "round 2 moved new data");
                System.out.println("jvhost counters after the run:\n" + jv.table());
            }
            assertTrue(Jvhost.await(() -> !jv.sessionActive(), Duration.ofSeconds(10)), "session ended");
            assertFalse(jv.client().connects() > 2, "no spurious connection");
        }
    }

    private boolean packed;

    private QemuGuest guest(String name) throws java.io.IOException {
        return QemuGuest.builder(socket).server(true).name(name + (packed ? "-packed" : "")).packed(packed).hostMtu(1500)
                .run("ping", "tcp-send", "serve").param("mib", MIB).param("port", 5001).start();
    }

    /** Ping both ways and MIB MiB of TCP each way, checksums compared; returns the guest's source MD5. */
    private static String traffic(NetNs ns, NetNs.TcpSink sink, QemuGuest g, Jvhost jv, String round) throws Exception {
        QemuGuest.Marker ping = g.awaitMarker("PING", STEP);
        assertEquals(0, ping.intField("rc"), round + ": guest → host ping\n" + g.tail(30) + "\n" + jv.table());
        QemuGuest.Marker sent = g.awaitMarker("TX-MD5", STEP);
        NetNs.Received got = sink.await(STEP);
        assertEquals(sent.first(), got.md5(), round + ": guest → host stream intact\n" + jv.table());
        assertEquals((long) MIB << 20, got.bytes());
        g.awaitMarker("SERVING", STEP);
        Cmd.Result hostPing = ns.ping(GUEST_IP, 3, Duration.ofMillis(200), Duration.ofSeconds(30));
        assertTrue(hostPing.ok() && hostPing.output().contains("3 packets received"),
                round + ": host → guest ping\n" + hostPing.output() + "\n" + jv.table());
        byte[] data = new byte[MIB << 20];
        new Random(round.hashCode()).nextBytes(data);
        ns.send(GUEST_IP, 5001, data, STEP);
        assertEquals(NetNs.md5(data), g.awaitMarker("RX-MD5", STEP).first(), round + ": host → guest stream intact");
        NetNs.Received back = ns.receive(GUEST_IP, 5002, STEP);
        assertEquals(g.awaitSourceMarker(back.md5(), STEP).first(), back.md5(), round + ": guest source stream intact");
        return back.md5();
    }
}
