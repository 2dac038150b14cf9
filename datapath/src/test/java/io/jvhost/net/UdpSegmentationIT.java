package io.jvhost.net;

import io.jvhost.demo.Netns;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.Packets;
import io.jvhost.driver.net.UdpGso;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.stats.DropReason;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.StatsRenderer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * UDP segmentation offload both ways through a real tap, the Java driver as the guest over
 * vhost-user (QEMU 7.2 and the Debian 6.1 guest kernel predate USO).
 *
 * <p>TX: the guest sends 64 KiB UDP GSO frames (IPv4 and IPv6, gso_size 1200–1472, the last
 * datagram short) to a UDP socket in a second namespace. The tap's namespace routes them out of a
 * veth whose TX checksum offload is off, so the kernel cuts each frame into datagrams and computes
 * every checksum in software there; the receiving veth has RX checksum offload off, so the
 * receiving kernel verifies every checksum and drops (and counts as InCsumErrors) any bad one. A
 * control frame with a wrong partial checksum shows that check is live. Hostile UDP_L4 headers
 * are dropped and counted by the device and never reach the kernel.
 *
 * <p>RX: a host socket with UDP_SEGMENT sends 64 KiB bursts to the guest; with GUEST_USO4/6 the
 * guest gets each as one GSO_UDP_L4 frame spread over mergeable buffers, without them (or with
 * GUEST_USO4 alone, which the kernel refuses on the tap) as segmented datagrams — the same bytes.
 */
@Tag("privileged")
@Timeout(180)
class UdpSegmentationIT {
    static final long TX_FEATURES = NetDeviceIT.MRG | bit(NET_F_HOST_USO);
    static final int PORT = 9000;

    @BeforeEach
    void needsTapWithUso() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
        String name = "jvq" + Sh.suffix();
        try (TapPort t = TapPort.open(name, 1)) {
            assumeTrue(t.usoSupported(), "the kernel takes no USO on taps (Linux before 6.2)");
        } finally {
            Sh.quiet("ip", "link", "del", name);
        }
    }

    static byte[] pattern(int seed, int len) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) {
            b[i] = (byte) (seed * 131 + i * 7 + (i >>> 8));
        }
        return b;
    }

    static byte[] mac(String ns, String ifName) {
        String s = Sh.run("ip", "netns", "exec", ns, "cat", "/sys/class/net/" + ifName + "/address").trim();
        byte[] m = new byte[6];
        for (int i = 0; i < 6; i++) {
            m[i] = (byte) Integer.parseInt(s.substring(3 * i, 3 * i + 2), 16);
        }
        return m;
    }

    static String macString(byte[] m) {
        StringBuilder b = new StringBuilder();
        for (byte x : m) {
            b.append(b.isEmpty() ? "" : ":").append(String.format("%02x", x));
        }
        return b.toString();
    }

    /** IPv6 back on for the tap (TapFixture switches it off), an address without DAD, the guest as a permanent neighbour. */
    static InetAddress[] addressTap(TapFixture f) {
        InetAddress host6 = UdpGso.address("fd00:99:" + Integer.toHexString(f.subnet) + "::1");
        InetAddress guest6 = UdpGso.address("fd00:99:" + Integer.toHexString(f.subnet) + "::2");
        f.nsExec("sysctl", "-qw", "net.ipv6.conf." + f.tapName + ".disable_ipv6=0");
        f.nsExec("ip", "addr", "add", host6.getHostAddress() + "/64", "dev", f.tapName, "nodad");
        String guestMac = macString(f.stack.mac());
        f.nsExec("ip", "neigh", "replace", Packets.ipString(f.guestIp), "lladdr", guestMac, "dev", f.tapName, "nud", "permanent");
        f.nsExec("ip", "-6", "neigh", "replace", guest6.getHostAddress(), "lladdr", guestMac, "dev", f.tapName, "nud",
                "permanent");
        return new InetAddress[]{host6, guest6};
    }

    /** Reads a counter of /proc/net/snmp ("Udp", "InCsumErrors") or /proc/net/snmp6 ("Udp6InCsumErrors") in {@code ns}. */
    static long snmp(String ns, String group, String name) {
        if (group.isEmpty()) {
            for (String l : Sh.run("ip", "netns", "exec", ns, "cat", "/proc/net/snmp6").split("\n")) {
                String[] kv = l.trim().split("\\s+");
                if (kv.length == 2 && kv[0].equals(name)) {
                    return Long.parseLong(kv[1]);
                }
            }
            throw new IllegalStateException(name + " not in snmp6");
        }
        String[] lines = Sh.run("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").split("\n");
        for (int i = 0; i + 1 < lines.length; i++) {
            if (lines[i].startsWith(group + ": ") && lines[i + 1].startsWith(group + ": ")) {
                List<String> names = Arrays.asList(lines[i].trim().split("\\s+"));
                return Long.parseLong(lines[i + 1].trim().split("\\s+")[names.indexOf(name)]);
            }
        }
        throw new IllegalStateException(group + " not in snmp");
    }

    /** The datagrams {@code frame} turns into: payload cut at gso_size. */
    static List<byte[]> segments(byte[] payload, int gso) {
        List<byte[]> out = new ArrayList<>();
        for (int p = 0; p < payload.length; p += gso) {
            out.add(Arrays.copyOfRange(payload, p, Math.min(payload.length, p + gso)));
        }
        return out;
    }

    static String stats(TapFixture f) {
        return StatsRenderer.table(f.device.stats());
    }

    /** A second namespace behind a veth from the tap's namespace, routed both ways, checksums done in software. */
    static final class Receiver implements AutoCloseable {
        final String ns;
        final String vethA;
        final String vethB;
        final InetAddress v4;
        final InetAddress v6;
        final DatagramSocket sock4;
        final DatagramSocket sock6;

        Receiver(TapFixture f) {
            String sfx = Sh.suffix();
            ns = "jvnr" + sfx;
            vethA = "jvra" + sfx;
            vethB = "jvrb" + sfx;
            String sub = Integer.toString(f.subnet);
            String sub6 = Integer.toHexString(f.subnet);
            v4 = UdpGso.address("10.98." + sub + ".2");
            v6 = UdpGso.address("fd00:98:" + sub6 + "::2");
            DatagramSocket s4 = null;
            DatagramSocket s6 = null;
            try {
                Sh.run("ip", "netns", "add", ns);
                Sh.run("ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB);
                Sh.run("ip", "link", "set", vethA, "netns", f.ns);
                Sh.run("ip", "link", "set", vethB, "netns", ns);
                f.nsExec("sysctl", "-qw", "net.ipv6.conf." + vethA + ".disable_ipv6=0", "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1");
                f.nsExec("ip", "addr", "add", "10.98." + sub + ".1/24", "dev", vethA);
                f.nsExec("ip", "addr", "add", "fd00:98:" + sub6 + "::1/64", "dev", vethA, "nodad");
                f.nsExec("ip", "link", "set", vethA, "up");
                // Software segmentation and checksums on the way out of the router ...
                f.nsExec("ethtool", "-K", vethA, "tx", "off");
                Sh.run("ip", "-n", ns, "link", "set", "lo", "up");
                Sh.run("ip", "-n", ns, "addr", "add", v4.getHostAddress() + "/24", "dev", vethB);
                Sh.run("ip", "-n", ns, "addr", "add", v6.getHostAddress() + "/64", "dev", vethB, "nodad");
                Sh.run("ip", "-n", ns, "link", "set", vethB, "up");
                // ... and software verification on the way in (a bad checksum is dropped and counted).
                Sh.run("ip", "netns", "exec", ns, "ethtool", "-K", vethB, "rx", "off");
                Sh.run("ip", "-n", ns, "route", "add", "default", "via", "10.98." + sub + ".1");
                Sh.run("ip", "-n", ns, "-6", "route", "add", "default", "via", "fd00:98:" + sub6 + "::1");
                String macA = macString(mac(f.ns, vethA));
                String macB = macString(mac(ns, vethB));
                f.nsExec("ip", "neigh", "replace", v4.getHostAddress(), "lladdr", macB, "dev", vethA, "nud", "permanent");
                f.nsExec("ip", "-6", "neigh", "replace", v6.getHostAddress(), "lladdr", macB, "dev", vethA, "nud", "permanent");
                Sh.run("ip", "-n", ns, "neigh", "replace", "10.98." + sub + ".1", "lladdr", macA, "dev", vethB, "nud", "permanent");
                Sh.run("ip", "-n", ns, "-6", "neigh", "replace", "fd00:98:" + sub6 + "::1", "lladdr", macA, "dev", vethB,
                        "nud", "permanent");
                s4 = Netns.in(ns, () -> new DatagramSocket(new InetSocketAddress(v4, PORT)));
                s6 = Netns.in(ns, () -> new DatagramSocket(new InetSocketAddress(v6, PORT)));
            } catch (RuntimeException | Error e) {
                if (s4 != null) {
                    s4.close();
                }
                Sh.quiet("ip", "netns", "del", ns);
                Sh.quiet("ip", "-n", f.ns, "link", "del", vethA);
                throw e;
            }
            sock4 = s4;
            sock6 = s6;
        }

        DatagramSocket socket(InetAddress dst) {
            return UdpGso.isV4(dst) ? sock4 : sock6;
        }

        /** The next datagram on the socket for {@code dst}, or null after {@code timeoutMs}. */
        byte[] next(InetAddress dst, int timeoutMs) throws Exception {
            DatagramSocket s = socket(dst);
            s.setSoTimeout(timeoutMs);
            DatagramPacket p = new DatagramPacket(new byte[65536], 65536);
            try {
                s.receive(p);
            } catch (SocketTimeoutException e) {
                return null;
            }
            return Arrays.copyOfRange(p.getData(), 0, p.getLength());
        }

        long csumErrors() {
            return snmp(ns, "Udp", "InCsumErrors") + snmp(ns, "", "Udp6InCsumErrors");
        }

        long datagramsIn() {
            return snmp(ns, "Udp", "InDatagrams") + snmp(ns, "", "Udp6InDatagrams");
        }

        long rxPackets() {
            return Long.parseLong(Sh.run("ip", "netns", "exec", ns, "cat", "/sys/class/net/" + vethB + "/statistics/rx_packets").trim());
        }

        @Override
        public void close() {
            if (sock4 != null) {
                sock4.close();
            }
            if (sock6 != null) {
                sock6.close();
            }
            Sh.quiet("ip", "netns", "del", ns);
        }
    }

    /** Sends one frame and expects exactly {@code expected} on the receiver's socket, in order, byte-exact. */
    static void sendAndExpect(TapFixture f, Receiver r, UdpGso.Frame frame, InetAddress dst, List<byte[]> expected,
                              String what) throws Exception {
        assertTrue(frame.sendOn(f.nic, 0, 2000), what + ": no TX buffer\n" + stats(f));
        for (int i = 0; i < expected.size(); i++) {
            byte[] got = r.next(dst, 5000);
            assertNotNull(got, what + ": datagram " + i + " of " + expected.size() + " missing (csum errors "
                    + r.csumErrors() + ")\n" + stats(f));
            assertArrayEquals(expected.get(i), got, what + ": datagram " + i);
        }
    }

    @Test
    void guestSendsUsoFramesAndAHostSocketGetsEveryDatagramWithValidChecksums() throws Exception {
        assumeTrue(java.nio.file.Files.isExecutable(java.nio.file.Path.of("/usr/sbin/ethtool"))
                || java.nio.file.Files.isExecutable(java.nio.file.Path.of("/sbin/ethtool")),
                "needs ethtool to switch the veth checksum offloads off (tools/install-deps installs it)");
        try (TapFixture f = new TapFixture(1, TX_FEATURES, 1500, 256, VirtioNetHdr.MAX_GSO_FRAME, WorkerConfig.defaults(), true);
             Receiver r = new Receiver(f)) {
            assertTrue(has(f.device.negotiatedFeatures(), NET_F_HOST_USO), "HOST_USO negotiated over vhost-user");
            InetAddress[] six = addressTap(f);
            InetAddress guest4 = InetAddress.getByAddress(new byte[]{10, 99, (byte) f.subnet, 2});
            InetAddress guest6 = six[1];
            byte[] guestMac = f.stack.mac();
            byte[] tapMac = mac(f.ns, f.tapName);
            int[] gso4 = {1472, 1200, 1337, 1448, 1250, 1400, 1471, 1201, 1300, 1472};
            int[] gso6 = {1452, 1200, 1337, 1448, 1250, 1400, 1451, 1201, 1300, 1452};
            int datagrams = 0;
            int frames = 0;
            long rxBefore = r.rxPackets();
            for (boolean v6 : new boolean[]{false, true}) {
                int[] sizes = v6 ? gso6 : gso4;
                InetAddress src = v6 ? guest6 : guest4;
                InetAddress dst = v6 ? r.v6 : r.v4;
                // The largest frame a guest may send: 65549/65550 bytes, headers included.
                int max = VirtioNetHdr.MAX_GSO_FRAME - Packets.ETH_HLEN - (v6 ? UdpGso.IPV6_HLEN : Packets.IP_HLEN) - Packets.UDP_HLEN;
                max = Math.min(max, 65507);
                for (int k = 0; k < sizes.length; k++) {
                    int gso = sizes[k];
                    int len = max - k * 97;
                    if (len % gso == 0) {
                        len--;
                    }
                    byte[] payload = pattern(frames, len);
                    UdpGso.Frame fr = UdpGso.build(guestMac, tapMac, src, dst, 40000 + k, PORT, payload, 0, len, gso);
                    assertEquals(VirtioNetHdr.GSO_UDP_L4, fr.gsoType());
                    List<byte[]> segs = segments(payload, gso);
                    assertTrue(segs.get(segs.size() - 1).length < gso, "last datagram short");
                    sendAndExpect(f, r, fr, dst, segs, (v6 ? "IPv6" : "IPv4") + " frame " + k + " (" + len + " B, gso " + gso + ")");
                    datagrams += segs.size();
                    frames++;
                }
            }
            QueueStats q = f.device.stats().get(0);
            assertEquals(0, q.totalDrops(), stats(f));
            assertEquals(0, r.csumErrors(), "every checksum verified good by the receiving kernel");
            assertEquals(datagrams, r.datagramsIn());
            assertTrue(r.rxPackets() - rxBefore >= datagrams, "segmented before the veth, not passed as GSO: "
                    + (r.rxPackets() - rxBefore) + " packets for " + datagrams + " datagrams");
            System.out.println("USO TX: " + frames + " frames → " + datagrams + " datagrams, all byte-exact, 0 checksum errors");

            // Control: a wrong partial checksum passes the device (it cannot know) and the kernel
            // segments it, but every datagram fails the receiver's check.
            for (boolean v6 : new boolean[]{false, true}) {
                InetAddress dst = v6 ? r.v6 : r.v4;
                byte[] payload = pattern(999, 20000);
                UdpGso.Frame fr = UdpGso.build(guestMac, tapMac, v6 ? guest6 : guest4, dst, 41000, PORT, payload, 0,
                        payload.length, 1400);
                int l4 = fr.csumStart();
                fr.frame()[l4 + 7] ^= 0x01;
                long before = r.csumErrors();
                assertTrue(fr.sendOn(f.nic, 0, 2000));
                assertNull(r.next(dst, 1000), "a datagram with a bad checksum was delivered");
                await(() -> r.csumErrors() - before == segments(payload, 1400).size());
            }

            // Hostile headers: each dropped and counted by the device, none reaches the kernel, the
            // queue keeps working.
            byte[] payload = pattern(7, 30000);
            UdpGso.Frame good = UdpGso.build(guestMac, tapMac, guest4, r.v4, 42000, PORT, payload, 0, payload.length, 1400);
            int l4 = good.csumStart();
            long badCsum = q.drops(DropReason.TX_BAD_CSUM);
            long badGso = q.drops(DropReason.TX_BAD_GSO);
            byte[] fb = good.frame();
            assertTrue(f.nic.send(0, fb, 0, fb.length, 0, VirtioNetHdr.GSO_UDP_L4, l4 + 8, 1400, 0, 0, 2000), "no NEEDS_CSUM");
            assertTrue(f.nic.send(0, fb, 0, fb.length, 1, VirtioNetHdr.GSO_UDP_L4, l4 + 8, 1400, l4, 16, 2000), "csum_offset 16");
            assertTrue(f.nic.send(0, fb, 0, fb.length, 1, VirtioNetHdr.GSO_UDP_L4, l4 + 8, 1400, 14, 6, 2000), "csum_start 14");
            assertTrue(f.nic.send(0, fb, 0, fb.length, 1, VirtioNetHdr.GSO_UDP_L4 | VirtioNetHdr.GSO_ECN, l4 + 8, 1400, l4, 6,
                    2000), "ECN");
            assertTrue(f.nic.send(0, fb, 0, fb.length, 1, VirtioNetHdr.GSO_UDP_L4, l4 + 8, 200, l4, 6, 2000), "150 segments");
            assertTrue(f.nic.send(0, fb, 0, fb.length, 1, VirtioNetHdr.GSO_UDP_L4, l4 + 8, 9000, l4, 6, 2000), "beyond the MTU");
            assertTrue(f.nic.send(0, fb, 0, fb.length, 1, VirtioNetHdr.GSO_UDP_L4, l4 + 8, 0, l4, 6, 2000), "gso_size 0");
            sendAndExpect(f, r, good, r.v4, segments(payload, 1400), "valid frame after the hostile ones");
            QueueStats after = f.device.stats().get(0);
            assertEquals(3, after.drops(DropReason.TX_BAD_CSUM) - badCsum, stats(f));
            assertEquals(4, after.drops(DropReason.TX_BAD_GSO) - badGso, stats(f));
            assertEquals(0, after.drops(DropReason.TX_TAP_ERROR), "nothing the kernel refused reached it\n" + stats(f));
            assertNull(r.next(r.v4, 300), "nothing else arrived");
            System.out.println(stats(f));
        }
    }

    private static void await(java.util.function.BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + 5_000_000_000L;
        while (!cond.getAsBoolean()) {
            assertTrue(System.nanoTime() < end, "condition not met within 5 s");
            Thread.sleep(20);
        }
    }

    /**
     * @param mode "uso": GUEST_USO4 + GUEST_USO6; "none": neither; "uso4": GUEST_USO4 alone, which
     *             the kernel refuses on a tap (it takes uso4 and uso6 only together), so the device
     *             runs the tap without USO and the guest gets datagrams
     */
    @ParameterizedTest(name = "guest {0}")
    @ValueSource(strings = {"uso", "none", "uso4"})
    void hostSendsUdpGsoBurstsGuestGetsThemWholeOrSegmented(String mode) throws Exception {
        long features = NetDeviceIT.MRG | switch (mode) {
            case "uso" -> bit(NET_F_GUEST_USO4) | bit(NET_F_GUEST_USO6);
            case "uso4" -> bit(NET_F_GUEST_USO4);
            default -> 0L;
        };
        boolean whole = mode.equals("uso");
        try (TapFixture f = new TapFixture(1, features, 1500, 256, 2048, WorkerConfig.defaults(), true)) {
            assertEquals(whole ? Offloads.TUN_F_CSUM | Offloads.TUN_F_USO : Offloads.TUN_F_CSUM, f.device.tap().offloads());
            InetAddress[] six = addressTap(f);
            InetAddress guest4 = InetAddress.getByAddress(new byte[]{10, 99, (byte) f.subnet, 2});
            InetAddress guest6 = six[1];
            int bursts = 0;
            int frames = 0;
            int maxBuffers = 0;
            for (boolean v6 : new boolean[]{false, true}) {
                InetAddress dst = v6 ? guest6 : guest4;
                int gso = v6 ? 1452 : 1472;
                // The kernel hands a tap whole GSO frames up to 65535 bytes with their Ethernet header.
                int max = 65535 - Packets.ETH_HLEN - (v6 ? UdpGso.IPV6_HLEN : Packets.IP_HLEN) - Packets.UDP_HLEN;
                try (UdpSegmentSocket s = Netns.in(f.ns, () -> UdpSegmentSocket.open(dst, PORT, gso))) {
                    for (int k = 0; k < 6; k++) {
                        int len = max - k * 1001;
                        byte[] data = pattern(100 + bursts, len);
                        s.send(data, 0, len);
                        ByteArrayOutputStream got = new ByteArrayOutputStream();
                        int burstFrames = 0;
                        long end = System.nanoTime() + 10_000_000_000L;
                        while (got.size() < len) {
                            assertTrue(System.nanoTime() < end, mode + ": burst " + k + " incomplete: " + got.size() + " of "
                                    + len + " bytes\n" + stats(f));
                            GuestNic.Received rcv = f.nic.receive(0, 500);
                            if (rcv == null) {
                                continue;
                            }
                            List<UdpGso.Datagram> dg = UdpGso.datagrams(rcv.frame(), rcv.gsoType(), rcv.gsoSize());
                            if (dg == null || dg.get(0).dport() != PORT || !dg.get(0).dst().equals(dst)) {
                                f.stack.handle(0, rcv); // ARP, IPv6 neighbour/router chatter of the namespace
                                continue;
                            }
                            burstFrames++;
                            maxBuffers = Math.max(maxBuffers, rcv.numBuffers());
                            if (whole) {
                                assertEquals(VirtioNetHdr.GSO_UDP_L4, rcv.gsoType(), "one USO frame per burst");
                                assertEquals(gso, rcv.gsoSize());
                                assertEquals(VirtioNetHdr.FLAG_NEEDS_CSUM, rcv.flags() & VirtioNetHdr.FLAG_NEEDS_CSUM);
                            } else {
                                assertEquals(VirtioNetHdr.GSO_NONE, rcv.gsoType(), "segmented by the kernel");
                                assertTrue(dg.size() == 1 && dg.get(0).payload().length <= gso);
                            }
                            for (UdpGso.Datagram d : dg) {
                                got.writeBytes(d.payload());
                            }
                        }
                        assertArrayEquals(data, got.toByteArray(), mode + ": burst " + k + " bytes");
                        assertEquals(whole ? 1 : (len + gso - 1) / gso, burstFrames, mode + ": frames for burst " + k);
                        bursts++;
                        frames += burstFrames;
                    }
                }
            }
            if (whole) {
                assertTrue(maxBuffers > 1, "64 KiB frames over several mergeable buffers (num_buffers " + maxBuffers + ")");
            }
            assertEquals(0, f.device.stats().get(0).totalDrops(), stats(f));
            System.out.println("USO RX, guest " + mode + ": " + bursts + " bursts → " + frames + " frames, max num_buffers "
                    + maxBuffers);
        }
    }
}
