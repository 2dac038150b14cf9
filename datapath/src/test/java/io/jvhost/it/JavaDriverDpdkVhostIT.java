package io.jvhost.it;

import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.demo.Netns;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.RingOptions;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.vhostuser.VhostUserMessage;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.stream.Stream;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The Java driver ({@link GuestNic} over {@link VhostUserClient}, memfd RAM, QEMU's message order)
 * as the front-end of DPDK's own vhost-user back-end (net_vhost + net_tap, io forwarding), once per
 * ring format: split, packed, split with IN_ORDER, packed with IN_ORDER (and packed rings of 7 entries,
 * odd and wrapping every few frames). For each it checks that the
 * format is the one in use — the driver's acknowledged features and DPDK's own log line of the
 * negotiated features — then that the kernel pings the Java guest through DPDK and gets every
 * answer, that UDP datagrams of many sizes cross both ways with their contents intact (host → guest
 * echo → host, and guest → host), and that DPDK signals the guest's RX call eventfd, so a guest
 * that sleeps on it (the bench's blocking RX front-end) is woken. Guards against the bench's old
 * reading that DPDK drops every frame towards the Java driver (it was the bench's measurement window
 * opening before the front-end had attached, not the driver).
 */
@Tag("privileged")
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class JavaDriverDpdkVhostIT {
    private static final byte[] GUEST_MAC = {2, 0, 0, 0x77, 0, 2};
    private static final int UDP_PORT = 9000;
    private static final int[] PAYLOAD_SIZES = {1, 18, 64, 200, 511, 1000, 1472};
    private static final Pattern NEGOTIATED = Pattern.compile("negotiated Virtio features: 0x([0-9a-fA-F]+)");
    @RegisterExtension
    final Scratch scratch = new Scratch("jvtj", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, DpdkTestpmd::unavailableReason);
    }

    /**
     * Every ring option with 256-entry rings, and packed rings of 7 entries: odd, and so small that
     * both rings wrap many times (the driver's and DPDK's wrap counters must agree every lap).
     */
    static Stream<Arguments> rings() {
        Stream<Arguments> all = RingOptions.ALL.stream().map(r -> Arguments.of(r, 256));
        return Stream.concat(all, Stream.of(Arguments.of(RingOptions.parse("packed"), 7),
                Arguments.of(RingOptions.parse("packed-inorder"), 7)));
    }

    @ParameterizedTest(name = "{0} rings of {1}")
    @MethodSource("rings")
    void kernelAndJavaDriverExchangeFramesThroughDpdkVhost(RingOptions rings, int ring) throws Exception {
        long features = rings.applyTo(VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
                | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX));
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
                assertEquals(rings.features(), ack & RingOptions.RING_BITS, "ring bits acknowledged");
                assertEquals(rings, nic.rings());
                // DPDK's word for the format it runs the rings in.
                String line = backend.logLine(backend.awaitLog("negotiated Virtio features", from, Duration.ofSeconds(60)));
                Matcher m = NEGOTIATED.matcher(line);
                assertTrue(m.find(), line);
                long dpdkFeatures = Long.parseUnsignedLong(m.group(1), 16);
                assertEquals(rings, RingOptions.of(dpdkFeatures), "DPDK negotiated " + line);
                backend.awaitLog("virtio is now ready", from, Duration.ofSeconds(60));
                System.out.printf("%s/%d: acknowledged 0x%x, DPDK: %s%n", rings, ring, ack, line.strip());
                GuestStack stack = new GuestStack(nic, GUEST_MAC, Packets.ip(10, 77, 0, 2));

                // Kernel → DPDK → Java guest (ARP, echo request) and back: every ping answered.
                AtomicBoolean stop = new AtomicBoolean();
                CompletableFuture<Void> pump = pumpUntil(stack, stop);
                Cmd.Result ping;
                try {
                    ping = ns.ping(GUEST_IP, 20, Duration.ofMillis(20), Duration.ofSeconds(20));
                } finally {
                    stop.set(true);
                    pump.get(10, TimeUnit.SECONDS);
                }
                assertTrue(ping.ok() && ping.output().contains("20 packets received"), ping.output());
                assertTrue(stack.echoReplies() >= 20, "echo replies " + stack.echoReplies());

                try (DatagramSocket host = Netns.in(ns.name(), () -> new DatagramSocket(
                        new InetSocketAddress(InetAddress.getByName(HOST_IP), UDP_PORT)))) {
                    host.setSoTimeout(2000);
                    // Host → guest → host: the guest's stack echoes UDP port 7; every datagram back intact.
                    stop.set(false);
                    pump = pumpUntil(stack, stop);
                    int echoed;
                    try {
                        echoed = echoRoundTrips(host);
                    } finally {
                        stop.set(true);
                        pump.get(10, TimeUnit.SECONDS);
                    }
                    assertEquals(3 * PAYLOAD_SIZES.length, echoed, "UDP echoes with intact payloads");
                    // Guest → host: bursts of datagrams the Java guest builds, each received intact.
                    int received = guestToHost(stack, host);
                    assertEquals(4 * 16, received, "guest datagrams received intact by the host");
                }
                System.out.printf("%s/%d: %d pings, %d UDP echoes, %d guest datagrams; buffers completed by an in-order"
                        + " batch's used entry: %d%n", rings, ring, stack.echoReplies(), stack.udpEchoes(), 4 * 16,
                        nic.inOrderImplied(0));
                if (rings.equals(RingOptions.parse("packed-inorder"))) {
                    // DPDK's packed dequeue reports what one burst took with one used descriptor naming
                    // its last buffer: the guest's back-to-back datagrams came back that way.
                    assertTrue(nic.inOrderImplied(0) > 0, "DPDK never completed a batch with one used descriptor");
                }

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
            System.out.printf("%s/%d: DPDK port stats %s%n", rings, ring, st);
            assertTrue(st.get(0).tx() >= 21 + 3 * PAYLOAD_SIZES.length, "DPDK delivered to the Java guest: " + st);
            assertTrue(st.get(0).rx() >= 20 + 3 * PAYLOAD_SIZES.length + 4 * 16, "DPDK took the Java guest's frames: " + st);
        }
    }

    private static CompletableFuture<Void> pumpUntil(GuestStack stack, AtomicBoolean stop) {
        return CompletableFuture.runAsync(() -> {
            while (!stop.get()) {
                stack.pump(0, 50);
            }
        });
    }

    /** A payload whose every byte depends on its datagram and position. */
    private static byte[] payload(int seq, int size) {
        byte[] p = new byte[size];
        for (int i = 0; i < size; i++) {
            p[i] = (byte) (seq * 31 + i * 7 + (i >>> 8));
        }
        return p;
    }

    /** Sends each size three times to the guest's UDP echo port; returns how many came back identical. */
    private static int echoRoundTrips(DatagramSocket host) throws Exception {
        InetSocketAddress guest = new InetSocketAddress(InetAddress.getByName(GUEST_IP), GuestStack.UDP_ECHO_PORT);
        byte[] buf = new byte[2048];
        int ok = 0;
        int seq = 0;
        for (int round = 0; round < 3; round++) {
            for (int size : PAYLOAD_SIZES) {
                byte[] p = payload(seq++, size);
                host.send(new DatagramPacket(p, p.length, guest));
                DatagramPacket r = new DatagramPacket(buf, buf.length);
                host.receive(r);
                assertEquals(guest, r.getSocketAddress(), "echo source");
                assertArrayEquals(p, Arrays.copyOf(r.getData(), r.getLength()), "echo of " + size + " bytes");
                ok++;
            }
        }
        return ok;
    }

    /**
     * The guest sends 4 bursts of 16 UDP datagrams (sizes cycling) to the host's socket, each burst
     * posted back to back so the back-end may take (and, with IN_ORDER, report) several at once;
     * returns how many the host received identical, in order.
     */
    private static int guestToHost(GuestStack stack, DatagramSocket host) throws Exception {
        int hostIp = Packets.ip(10, 77, 0, 1);
        byte[] hostMac = stack.resolve(0, hostIp, 5000);
        GuestNic nic = stack.nic();
        byte[] buf = new byte[2048];
        int ok = 0;
        int seq = 1000;
        for (int burst = 0; burst < 4; burst++) {
            byte[][] sent = new byte[16][];
            for (int i = 0; i < 16; i++) {
                sent[i] = payload(seq++, PAYLOAD_SIZES[(burst + i) % PAYLOAD_SIZES.length]);
                assertTrue(nic.send(0, Packets.udp(stack.mac(), hostMac, stack.ip(), hostIp, 40000, UDP_PORT, sent[i], i),
                        2000), "TX buffer");
            }
            for (int i = 0; i < 16; i++) {
                DatagramPacket r = new DatagramPacket(buf, buf.length);
                try {
                    host.receive(r);
                } catch (SocketTimeoutException e) {
                    throw new AssertionError("guest datagram " + i + " of burst " + burst + " did not arrive\n" + nic.describe(0), e);
                }
                assertEquals(40000, r.getPort());
                assertArrayEquals(sent[i], Arrays.copyOf(r.getData(), r.getLength()), "guest datagram " + i + " of burst " + burst);
                ok++;
            }
            assertTrue(nic.flushTx(0, 5000), "TX buffers back\n" + nic.describe(0));
        }
        return ok;
    }
}
