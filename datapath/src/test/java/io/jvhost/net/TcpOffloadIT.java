package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.demo.Netns;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.Packets;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicReference;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * TCP with offloads through the tap: the guest sends 64 KiB TSO frames with partial checksums and
 * the kernel receives an intact stream; the kernel sends TSO frames to a guest with GUEST_TSO and
 * MRG_RXBUF that arrive as multi-buffer frames. The guest's TCP is a minimal in-test state machine
 * (in-order only, go-back-N on timeout).
 */
@Tag("privileged")
@Timeout(120)
class TcpOffloadIT {
    static final long HOST_TSO = NetDeviceIT.BASE | bit(NET_F_HOST_TSO4) | bit(NET_F_HOST_TSO6) | bit(NET_F_MRG_RXBUF);
    static final long GUEST_TSO = NetDeviceIT.MRG | bit(NET_F_GUEST_TSO4) | bit(NET_F_GUEST_TSO6);
    static final int MSS = 1460;
    static final int TOTAL = 4 << 20;

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    static byte pattern(long i) {
        return (byte) (i * 31 + (i >>> 8));
    }

    static byte[] synOptions(int mss, int wscale) {
        // MSS (kind 2), NOP, window scale (kind 3)
        return new byte[]{2, 4, (byte) (mss >>> 8), (byte) mss, 1, 3, 3, (byte) wscale};
    }

    @Test
    void guestSendsTsoFramesKernelReceivesIntactStream() throws Exception {
        try (TapFixture f = new TapFixture(1, HOST_TSO, 1500, 256, VirtioNetHdr.MAX_GSO_FRAME, WorkerConfig.defaults())) {
            int port = 5001;
            ServerSocketChannel ss = Netns.in(f.ns, () -> ServerSocketChannel.open()
                    .bind(new InetSocketAddress(Packets.ipString(f.hostIp), port)));
            AtomicReference<byte[]> received = new AtomicReference<>();
            Thread server = new Thread(() -> {
                try (SocketChannel c = ss.accept()) {
                    ByteArrayOutputStream bo = new ByteArrayOutputStream();
                    ByteBuffer b = ByteBuffer.allocate(1 << 16);
                    while (c.read(b) >= 0) {
                        bo.write(b.array(), 0, b.position());
                        b.clear();
                    }
                    received.set(bo.toByteArray());
                } catch (Exception e) {
                    received.set(new byte[0]);
                }
            });
            server.start();
            byte[] mac = f.stack.mac();
            byte[] hostMac = f.stack.resolve(0, f.hostIp, 3000);
            int sport = 40000;
            long isn = 1000;
            // handshake
            f.nic.send(0, Packets.tcp(mac, hostMac, f.guestIp, f.hostIp, sport, port, isn, 0, Packets.TCP_SYN, 65535,
                    null, 0, 0, false, synOptions(MSS, 0)), 1000);
            long[] st = new long[3]; // peer next seq, acked (snd_una), peer window
            assertTrue(awaitTcp(f, sport, st, 3000, true), "SYN-ACK");
            long ack = st[0];
            long una = isn + 1;
            long nxt = una;
            f.nic.send(0, Packets.tcp(mac, hostMac, f.guestIp, f.hostIp, sport, port, nxt, ack, Packets.TCP_ACK, 65535,
                    null, 0, 0, false, null), 1000);
            byte[] data = new byte[TOTAL];
            for (int i = 0; i < TOTAL; i++) {
                data[i] = pattern(i);
            }
            long end = una + TOTAL;
            long lastProgress = System.nanoTime();
            int gsoFrames = 0;
            while (una < end) {
                long window = Math.max(st[2], MSS);
                while (nxt < end && nxt - una < window) {
                    int len = (int) Math.min(Math.min(end - nxt, 65000 - 54), window - (nxt - una));
                    if (len <= 0) {
                        break;
                    }
                    int off = (int) (nxt - (isn + 1));
                    byte[] seg = Packets.tcp(mac, hostMac, f.guestIp, f.hostIp, sport, port, nxt, ack,
                            Packets.TCP_ACK | Packets.TCP_PSH, 65535, data, off, len, true, null);
                    boolean gso = len > MSS;
                    if (gso) {
                        gsoFrames++;
                    }
                    int frameLen = 54 + len;
                    assertTrue(f.nic.send(0, seg, 0, frameLen, VirtioNetHdr.FLAG_NEEDS_CSUM,
                            gso ? VirtioNetHdr.GSO_TCPV4 : VirtioNetHdr.GSO_NONE, 54, gso ? MSS : 0, 34, 16, 2000));
                    nxt += len;
                }
                long before = una;
                st[1] = una;
                awaitTcp(f, sport, st, 200, false);
                una = Math.max(una, st[1]);
                if (una > before) {
                    lastProgress = System.nanoTime();
                } else if (System.nanoTime() - lastProgress > 300_000_000L) {
                    nxt = una; // go back N
                    lastProgress = System.nanoTime();
                }
                assertTrue(System.nanoTime() - lastProgress < 5_000_000_000L, "stalled at " + (una - isn - 1)
                        + "\n" + StatsRenderer.table(f.device.stats()));
            }
            f.nic.send(0, Packets.tcp(mac, hostMac, f.guestIp, f.hostIp, sport, port, nxt, ack,
                    Packets.TCP_FIN | Packets.TCP_ACK, 65535, null, 0, 0, false, null), 1000);
            server.join(10_000);
            byte[] got = received.get();
            assertNotNull(got, "server finished");
            assertEquals(TOTAL, got.length);
            assertArrayEquals(data, got, "stream intact");
            assertTrue(gsoFrames > 10, "sent as 64 KiB GSO frames: " + gsoFrames);
            assertEquals(0, f.device.stats().get(0).totalDrops(), StatsRenderer.table(f.device.stats()));
            ss.close();
        }
    }

    /**
     * Pumps guest RX for TCP segments to {@code sport}; updates st[0] = peer seq + len (for SYN
     * +1), st[1] = max ack, st[2] = peer window. Returns true when a segment arrived.
     */
    static boolean awaitTcp(TapFixture f, int sport, long[] st, int ms, boolean syn) {
        long end = System.nanoTime() + ms * 1_000_000L;
        boolean any = false;
        while (System.nanoTime() < end) {
            GuestNic.Received r = f.nic.receive(0, any ? 0 : 20);
            if (r == null) {
                if (any) {
                    return true;
                }
                continue;
            }
            byte[] fr = r.frame();
            if (Packets.etherType(fr) != Packets.ETHERTYPE_IPV4 || Packets.ipProto(fr) != Packets.PROTO_TCP) {
                f.stack.handle(0, r);
                continue;
            }
            int t = Packets.l4(fr);
            if (Packets.u16(fr, t + 2) != sport) {
                continue;
            }
            int flags = Packets.u8(fr, t + 13);
            if (syn && (flags & Packets.TCP_SYN) != 0) {
                st[0] = (Packets.u32(fr, t + 4) & 0xffffffffL) + 1;
            }
            if ((flags & Packets.TCP_ACK) != 0) {
                long a = Packets.u32(fr, t + 8) & 0xffffffffL;
                st[1] = Math.max(st[1], a);
            }
            st[2] = Packets.u16(fr, t + 14);
            any = true;
            if (syn) {
                return true;
            }
        }
        return any;
    }

    /**
     * 64 entries lend 128 KiB, so the RX window often holds less than a 64 KiB GSO frame when the
     * ring runs dry: the engine reads with it anyway and finishes a spilled frame from the overflow
     * area once the guest posts more — intact, nothing dropped.
     */
    @ParameterizedTest(name = "ring {0}")
    @ValueSource(ints = {256, 64})
    void kernelSendsTsoFramesToMergeableGuest(int ringSize) throws Exception {
        try (TapFixture f = new TapFixture(1, GUEST_TSO, 1500, ringSize, 2048, WorkerConfig.defaults())) {
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO4 | Offloads.TUN_F_TSO6, f.device.tap().offloads());
            int port = 6001;
            byte[] data = new byte[TOTAL];
            for (int i = 0; i < TOTAL; i++) {
                data[i] = pattern(i);
            }
            SocketChannel c = Netns.in(f.ns, SocketChannel::open);
            Thread client = new Thread(() -> {
                try {
                    c.connect(new InetSocketAddress(Packets.ipString(f.guestIp), port));
                    ByteBuffer b = ByteBuffer.wrap(data);
                    while (b.hasRemaining()) {
                        c.write(b);
                    }
                    c.shutdownOutput();
                } catch (Exception e) {
                    // the test reports what the guest did (not) receive
                }
            });
            client.start();
            byte[] mac = f.stack.mac();
            ByteArrayOutputStream stream = new ByteArrayOutputStream();
            long isn = 5000;
            long rcvNxt = -1;
            int gsoFrames = 0;
            int maxBuffers = 0;
            byte[] peerMac = null;
            int peerPort = 0;
            boolean fin = false;
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (!fin && System.nanoTime() < deadline) {
                GuestNic.Received r = f.nic.receive(0, 200);
                if (r == null) {
                    continue;
                }
                byte[] fr = r.frame();
                if (Packets.etherType(fr) != Packets.ETHERTYPE_IPV4 || Packets.ipProto(fr) != Packets.PROTO_TCP
                        || Packets.ipDst(fr) != f.guestIp) {
                    f.stack.handle(0, r);
                    continue;
                }
                int t = Packets.l4(fr);
                if (Packets.u16(fr, t + 2) != port) {
                    continue;
                }
                peerMac = Packets.srcMac(fr);
                peerPort = Packets.u16(fr, t);
                int flags = Packets.u8(fr, t + 13);
                long seq = Packets.u32(fr, t + 4) & 0xffffffffL;
                int dataOff = t + (Packets.u8(fr, t + 12) >>> 4) * 4;
                int len = Packets.ETH_HLEN + Packets.ipTotalLen(fr) - dataOff;
                if ((flags & Packets.TCP_SYN) != 0) {
                    rcvNxt = seq + 1;
                    f.nic.send(0, Packets.tcp(mac, peerMac, f.guestIp, Packets.ipSrc(fr), port, peerPort, isn, rcvNxt,
                            Packets.TCP_SYN | Packets.TCP_ACK, 65535, null, 0, 0, false, synOptions(MSS, 7)), 1000);
                    continue;
                }
                if (r.gsoType() != VirtioNetHdr.GSO_NONE) {
                    gsoFrames++;
                    assertTrue(r.gsoSize() > 0);
                }
                maxBuffers = Math.max(maxBuffers, r.numBuffers());
                if (seq == rcvNxt && len > 0) {
                    stream.write(fr, dataOff, len);
                    rcvNxt += len;
                }
                if ((flags & Packets.TCP_FIN) != 0 && seq + len == rcvNxt) {
                    rcvNxt++;
                    fin = true;
                }
                f.nic.send(0, Packets.tcp(mac, peerMac, f.guestIp, Packets.ipSrc(fr), port, peerPort, isn + 1, rcvNxt,
                        Packets.TCP_ACK | (fin ? Packets.TCP_FIN : 0), 65535, null, 0, 0, false, null), 1000);
            }
            client.join(5000);
            c.close();
            assertTrue(fin, "FIN received; got " + stream.size() + "\n" + StatsRenderer.table(f.device.stats()));
            assertEquals(TOTAL, stream.size());
            assertArrayEquals(data, stream.toByteArray(), "stream intact");
            assertTrue(gsoFrames > 0, "kernel sent TSO frames to the guest");
            assertTrue(maxBuffers > 1, "multi-buffer frames (num_buffers " + maxBuffers + ")");
            System.out.println("host->guest TCP: " + gsoFrames + " GSO frames, max num_buffers " + maxBuffers);
            System.out.println(StatsRenderer.table(f.device.stats()));
            assertEquals(0, f.device.stats().get(0).totalDrops(), StatsRenderer.table(f.device.stats()));
            assertFalse(Arrays.equals(new byte[0], stream.toByteArray()));
        }
    }
}
