package io.jvhost.net;

import io.jvhost.device.NetDevice;
import io.jvhost.stats.DropReason;
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
import org.junit.jupiter.api.io.TempDir;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.DatagramChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@code --capture} end to end: a device with capture on carries frames both ways through a real
 * tap; after the device is closed the pcap file is read back and must hold every frame, byte for
 * byte, in order per direction, with a valid global header and consistent record headers.
 */
@Tag("privileged")
class CaptureIT {
    static final long MRG = bit(F_VERSION_1) | bit(RING_F_EVENT_IDX) | bit(NET_F_CSUM) | bit(NET_F_GUEST_CSUM) | bit(NET_F_MRG_RXBUF);
    static final int[] SIZES = {1, 18, 100, 1000, 1472, 3000, 8972};
    static final int GUEST_PORT = 9999;
    static final int HOST_PORT = 9998;

    record Rec(long tsNanos, int capLen, int origLen, byte[] data) {
    }

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    @Test
    @Timeout(120)
    void captureHoldsEveryFrameBothWays(@TempDir Path dir) throws Exception {
        Path pcap = dir.resolve("cap.pcap");
        long t0 = System.currentTimeMillis() * 1_000_000L;
        List<byte[]> sentByGuest = new ArrayList<>();
        List<byte[]> receivedByGuest = new ArrayList<>();
        TapFixture f = new TapFixture(1, MRG, 9000, 256, 9100, WorkerConfig.defaults(), false,
                c -> c.withCapture(pcap));
        try {
            byte[] hostMac = f.stack.resolve(0, f.hostIp, 3000);
            DatagramChannel ch = Netns.in(f.ns, () -> DatagramChannel.open().bind(new InetSocketAddress(HOST_PORT)));
            try {
                ch.socket().setSoTimeout(3000);
                Random rnd = new Random(11);
                ByteBuffer in = ByteBuffer.allocate(65536);
                for (int size : SIZES) {
                    byte[] payload = new byte[size];
                    rnd.nextBytes(payload);
                    // guest → host
                    byte[] frame = Packets.udp(f.stack.mac(), hostMac, f.guestIp, f.hostIp, GUEST_PORT, HOST_PORT,
                            payload, size);
                    assertTrue(f.nic.send(0, frame, 2000));
                    sentByGuest.add(frame);
                    in.clear();
                    ch.receive(in);
                    assertEquals(size, in.position(), "host got the guest's datagram");
                    // host → guest
                    rnd.nextBytes(payload);
                    ch.send(ByteBuffer.wrap(payload), new InetSocketAddress(Packets.ipString(f.guestIp), GUEST_PORT));
                    GuestNic.Received r;
                    do {
                        r = f.stack.pump(0, 3000);
                        assertNotNull(r, "host datagram of " + size + " bytes\n" + StatsRenderer.table(f.device.stats()));
                    } while (Packets.ipProto(r.frame()) != Packets.PROTO_UDP);
                    assertArrayEquals(payload, Arrays.copyOfRange(r.frame(), 42, 42 + size));
                    receivedByGuest.add(r.frame());
                }
            } finally {
                ch.close();
            }
            assertTrue(f.nic.flushTx(0, 2000));
            assertEquals(0, f.device.stats().get(0).drops(DropReason.CAPTURE_NO_BUFFER),
                    StatsRenderer.table(f.device.stats()));
        } finally {
            f.close(); // the device closes the capture: queued frames are written, the file closed
        }
        long t1 = System.currentTimeMillis() * 1_000_000L;

        byte[] file = Files.readAllBytes(pcap);
        ByteBuffer b = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN);
        assertTrue(file.length >= PacketCapture.FILE_HEADER_SIZE);
        assertEquals(PacketCapture.MAGIC_NANOS, b.getInt(), "pcap magic (nanosecond timestamps, little-endian)");
        assertEquals(2, b.getShort());
        assertEquals(4, b.getShort());
        assertEquals(0, b.getInt(), "thiszone");
        assertEquals(0, b.getInt(), "sigfigs");
        assertEquals(NetDevice.CAPTURE_SNAPLEN, b.getInt(), "snaplen");
        assertEquals(PacketCapture.LINKTYPE_ETHERNET, b.getInt(), "link type");
        List<Rec> recs = new ArrayList<>();
        while (b.remaining() > 0) {
            assertTrue(b.remaining() >= PacketCapture.RECORD_HEADER_SIZE, "truncated record header");
            long sec = Integer.toUnsignedLong(b.getInt());
            int nsec = b.getInt();
            int capLen = b.getInt();
            int origLen = b.getInt();
            assertTrue(nsec >= 0 && nsec < 1_000_000_000, "nanoseconds field " + nsec);
            assertTrue(capLen > 0 && capLen <= origLen && capLen <= NetDevice.CAPTURE_SNAPLEN, capLen + "/" + origLen);
            assertTrue(b.remaining() >= capLen, "truncated record");
            byte[] data = new byte[capLen];
            b.get(data);
            long ts = sec * 1_000_000_000L + nsec;
            assertTrue(ts >= t0 - 1_000_000_000L && ts <= t1 + 1_000_000_000L, "timestamp within the test");
            recs.add(new Rec(ts, capLen, origLen, data));
        }
        // Every frame the guest sent and got is there, whole (caplen == origlen), in order.
        assertInOrder("TX (guest → tap)", sentByGuest, recs);
        assertInOrder("RX (tap → guest)", receivedByGuest, recs);
        // ARP both ways too: the guest's request and the kernel's reply.
        assertTrue(recs.stream().anyMatch(r -> Packets.etherType(r.data()) == Packets.ETHERTYPE_ARP
                && Packets.u16(r.data(), 20) == Packets.ARP_REQUEST));
        assertTrue(recs.stream().anyMatch(r -> Packets.etherType(r.data()) == Packets.ETHERTYPE_ARP
                && Packets.u16(r.data(), 20) == Packets.ARP_REPLY));
        assertFalse(Files.exists(Path.of("/sys/class/net/" + f.tapName)), "tap removed");
        System.out.println("capture: " + recs.size() + " records, " + file.length + " bytes");
    }

    private static void assertInOrder(String what, List<byte[]> frames, List<Rec> recs) {
        int from = 0;
        for (byte[] frame : frames) {
            int at = -1;
            for (int i = from; i < recs.size(); i++) {
                if (Arrays.equals(frame, recs.get(i).data())) {
                    at = i;
                    break;
                }
            }
            assertTrue(at >= 0, what + ": frame of " + frame.length + " bytes missing (or out of order)");
            assertEquals(frame.length, recs.get(at).origLen(), what + ": original length");
            from = at + 1;
        }
    }
}
