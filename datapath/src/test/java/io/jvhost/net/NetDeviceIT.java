package io.jvhost.net;

import io.jvhost.device.NetDevice;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.demo.Netns;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Java guest ↔ NetDevice (in-process) ↔ tap ↔ kernel stack in a private netns. */
@Tag("privileged")
@Timeout(120)
class NetDeviceIT {
    static final long BASE = bit(F_VERSION_1) | bit(RING_F_EVENT_IDX) | bit(NET_F_CSUM) | bit(NET_F_GUEST_CSUM);
    static final long MRG = BASE | bit(NET_F_MRG_RXBUF);

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    /** Pumps the guest stack on a thread until stopped. */
    static Thread pumper(GuestStack s, int qp, AtomicBoolean stop) {
        Thread t = new Thread(() -> {
            while (!stop.get()) {
                s.pump(qp, 50);
            }
        }, "guest-pump-" + qp);
        t.setDaemon(true);
        t.start();
        return t;
    }

    @Test
    void arpAndPingBothWays() throws Exception {
        try (TapFixture f = new TapFixture(1, MRG, 1500, 256, 2048, WorkerConfig.defaults())) {
            AtomicBoolean stop = new AtomicBoolean();
            Thread p = pumper(f.stack, 0, stop);
            try {
                // As root, isReachable sends ICMP echo requests from a raw socket opened in the netns.
                java.net.InetAddress guest = java.net.InetAddress.getByName(Packets.ipString(f.guestIp));
                for (int i = 0; i < 3; i++) {
                    assertTrue(Netns.in(f.ns, () -> guest.isReachable(2000)), "ping " + i);
                }
            } finally {
                stop.set(true);
                p.join();
            }
            assertTrue(f.stack.arpReplies() >= 1);
            assertTrue(f.stack.echoReplies() >= 3);
            // guest → host
            byte[] hostMac = f.stack.resolve(0, f.hostIp, 3000);
            for (int seq = 1; seq <= 3; seq++) {
                byte[] payload = ("ping " + seq).getBytes();
                f.nic.send(0, Packets.icmpEcho(f.stack.mac(), hostMac, f.guestIp, f.hostIp, Packets.ICMP_ECHO_REQUEST,
                        0x1234, seq, payload), 1000);
                GuestNic.Received r;
                do {
                    r = f.stack.pump(0, 2000);
                    assertNotNull(r, "echo reply " + seq);
                } while (Packets.ipProto(r.frame()) != Packets.PROTO_ICMP);
                int l4 = Packets.l4(r.frame());
                assertEquals(Packets.ICMP_ECHO_REPLY, Packets.u8(r.frame(), l4));
                assertEquals(seq, Packets.u16(r.frame(), l4 + 6));
            }
            QueueStats s = f.device.stats().get(0);
            assertTrue(s.get(Counter.TX_FRAMES) >= 6 && s.get(Counter.RX_FRAMES) >= 6, StatsRenderer.table(f.device.stats()));
            assertEquals(0, s.totalDrops(), StatsRenderer.table(f.device.stats()));
        }
    }

    @Test
    void udpEchoAllSizesAtMtu9000WithMergeableBuffers() throws Exception {
        try (TapFixture f = new TapFixture(1, MRG, 9000, 256, 9100, WorkerConfig.defaults())) {
            udpEcho(f, new int[]{1, 18, 64, 100, 512, 1400, 1472, 1500, 3000, 4000, 8000, 8972});
            // host → guest, not echoed: check num_buffers of a 9000-byte frame
            DatagramChannel ch = Netns.in(f.ns, () -> DatagramChannel.open().bind(new InetSocketAddress(0)));
            try {
                byte[] payload = new byte[8972];
                new Random(7).nextBytes(payload);
                ch.send(ByteBuffer.wrap(payload), new InetSocketAddress(Packets.ipString(f.guestIp), 9999));
                // Skip what the host's stack sends on its own (ARP, anything not UDP).
                GuestNic.Received r;
                do {
                    r = f.stack.pump(0, 3000);
                    assertNotNull(r, "the 9000-byte datagram did not arrive");
                } while (Packets.etherType(r.frame()) != Packets.ETHERTYPE_IPV4
                        || Packets.ipProto(r.frame()) != Packets.PROTO_UDP);
                assertEquals(14 + 20 + 8 + 8972, r.frame().length);
                int bufLen = io.jvhost.driver.NetBufferLayout.rxMergeableLen();
                assertEquals((r.frame().length + 12 + bufLen - 1) / bufLen, r.numBuffers());
                assertTrue(r.numBuffers() >= 3);
                assertArrayEquals(payload, Arrays.copyOfRange(r.frame(), 42, r.frame().length));
            } finally {
                ch.close();
            }
        }
    }

    @Test
    void udpEchoWithSmallBuffersAndLegacyHeader() throws Exception {
        // no VERSION_1, no MRG_RXBUF: 10-byte header, small 1518-byte buffers, header in its own descriptor
        long legacy = bit(RING_F_EVENT_IDX);
        try (TapFixture f = new TapFixture(1, legacy, 1500, 128, 2048, WorkerConfig.defaults())) {
            assertEquals(10, f.nic.hdrLen());
            f.nic.setTxSeparateHeader(0, true);
            udpEcho(f, new int[]{1, 64, 1000, 1472});
        }
    }

    @Test
    void udpEchoWithBigBuffers() throws Exception {
        long big = BASE | bit(NET_F_GUEST_TSO4) | bit(NET_F_GUEST_TSO6);
        try (TapFixture f = new TapFixture(1, big, 9000, 64, 9100, WorkerConfig.defaults().withBusyPollNanos(50_000))) {
            assertEquals(GuestNic.RxMode.BIG, f.nic.rxMode());
            udpEcho(f, new int[]{64, 1472, 8972});
        }
    }

    static void udpEcho(TapFixture f, int[] sizes) throws Exception {
        AtomicBoolean stop = new AtomicBoolean();
        Thread p = pumper(f.stack, 0, stop);
        DatagramChannel ch = Netns.in(f.ns, () -> DatagramChannel.open().bind(new InetSocketAddress(0)));
        try {
            ch.configureBlocking(true);
            ch.socket().setSoTimeout(3000);
            ch.connect(new InetSocketAddress(Packets.ipString(f.guestIp), GuestStack.UDP_ECHO_PORT));
            Random rnd = new Random(42);
            ByteBuffer in = ByteBuffer.allocate(65536);
            for (int size : sizes) {
                for (int rep = 0; rep < 3; rep++) {
                    byte[] payload = new byte[size];
                    rnd.nextBytes(payload);
                    ch.write(ByteBuffer.wrap(payload));
                    in.clear();
                    var sel = java.nio.channels.Selector.open();
                    ch.configureBlocking(false);
                    ch.register(sel, java.nio.channels.SelectionKey.OP_READ);
                    assertTrue(sel.select(3000) > 0, "echo of " + size + " bytes\n" + StatsRenderer.table(f.device.stats()));
                    sel.close();
                    ch.configureBlocking(true);
                    ch.read(in);
                    in.flip();
                    byte[] got = new byte[in.remaining()];
                    in.get(got);
                    assertArrayEquals(payload, got, "payload of " + size);
                }
            }
        } finally {
            stop.set(true);
            p.join();
            ch.close();
        }
        assertEquals(0, f.device.stats().get(0).totalDrops(), StatsRenderer.table(f.device.stats()));
    }
}
