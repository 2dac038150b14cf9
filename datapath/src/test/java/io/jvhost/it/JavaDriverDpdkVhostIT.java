package io.jvhost.it;

import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.vhostuser.VhostUserMessage;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The Java driver ({@link GuestNic} over {@link VhostUserClient}, memfd RAM, QEMU's message order)
 * as the front-end of DPDK's own vhost-user back-end (net_vhost + net_tap, io forwarding): the
 * kernel pings the Java guest through DPDK and gets every answer, and DPDK signals the guest's RX
 * call eventfd, so a guest that sleeps on it (the bench's blocking RX front-end) is woken. Guards
 * against the bench's old reading that DPDK drops every frame towards the Java driver (it was the
 * bench's measurement window opening before the front-end had attached, not the driver).
 */
@Tag("privileged")
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class JavaDriverDpdkVhostIT {
    private static final byte[] GUEST_MAC = {2, 0, 0, 0x77, 0, 2};
    @RegisterExtension
    final Scratch scratch = new Scratch("jvtj", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, DpdkTestpmd::unavailableReason);
    }

    @Test
    void kernelPingsTheJavaDriverThroughDpdkVhostAndDpdkWakesItsRxCall() throws Exception {
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF)
                | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);
        int ring = 256;
        try (NetNs ns = NetNs.create();
             DpdkTestpmd backend = DpdkTestpmd.vhostBackend(socket, tap, false, 1)) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            int from = backend.logLines();
            try (DriverMemory mem = DriverMemory.memfd("dpdk-it", GuestNic.ramNeeded(1, ring, 1514, features),
                    DriverMemory.DEFAULT_GPA_BASE);
                 GuestNic nic = new GuestNic(mem, 1, features, ring, 1514);
                 VhostUserClient client = VhostUserClient.connect(socket.toString())) {
                long ack = nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
                assertEquals(features, ack & features, "DPDK acknowledged the driver's features");
                backend.awaitLog("virtio is now ready", from, Duration.ofSeconds(60));
                GuestStack stack = new GuestStack(nic, GUEST_MAC, Packets.ip(10, 77, 0, 2));

                // Kernel → DPDK → Java guest (ARP, echo request) and back: every ping answered.
                AtomicBoolean stop = new AtomicBoolean();
                CompletableFuture<Void> pump = CompletableFuture.runAsync(() -> {
                    while (!stop.get()) {
                        stack.pump(0, 50);
                    }
                });
                Cmd.Result ping;
                try {
                    ping = ns.ping(GUEST_IP, 20, Duration.ofMillis(20), Duration.ofSeconds(20));
                } finally {
                    stop.set(true);
                    pump.get(10, TimeUnit.SECONDS);
                }
                assertTrue(ping.ok() && ping.output().contains("20 packets received"), ping.output());
                assertTrue(stack.echoReplies() >= 20, "echo replies " + stack.echoReplies());

                // Blocking guest: with the ring drained and calls re-enabled, one more ping must
                // arrive as a call on the RX call eventfd (not only as a used entry found by polling).
                while (nic.drainRx(0, 0) > 0) {
                    // drop whatever is left (late IPv6 chatter)
                }
                CompletableFuture<Cmd.Result> one = CompletableFuture.supplyAsync(
                        () -> ns.ping(GUEST_IP, 1, Duration.ofMillis(100), Duration.ofSeconds(3)));
                assertTrue(nic.awaitRxCall(0, 10_000), "DPDK did not signal the RX call eventfd\n" + nic.describe(0));
                assertTrue(nic.drainRx(0, 1000) >= 1, "a frame behind the call");
                one.get(20, TimeUnit.SECONDS);
            }
            Map<Integer, DpdkTestpmd.PortStats> st = backend.stop();
            assertTrue(st.get(0).tx() >= 21, "DPDK delivered to the Java guest: " + st);
            assertTrue(st.get(0).rx() >= 20, "DPDK took the Java guest's replies: " + st);
        }
    }
}
