package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A real tap: frames with a 12-byte virtio-net header in both directions through a network
 * namespace the test creates, and the error messages for taps we may not open.
 *
 * <p>Needs root and /dev/net/tun; every tap and namespace is named with a random suffix and removed
 * in {@link #cleanUp()} even when a test fails.
 */
@Tag("privileged")
class TapIT {
    private static final int VNET_HDR_LEN = 12;
    private static final int ETH_HLEN = 14;
    private static final int ARP_LEN = 28;
    private static final short ETH_P_ARP = 0x0806;
    private static final ValueLayout.OfShort BE16 = JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final byte[] OUR_MAC = {0x02, 0x6a, 0x76, 0x68, 0x00, 0x02};

    private final Deque<Runnable> cleanups = new ArrayDeque<>();
    private final String suffix = HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt()).substring(2);

    @BeforeAll
    static void requirements() throws IOException {
        assumeTrue(isRoot(), "needs root (CAP_NET_ADMIN) to create taps and namespaces");
        assumeTrue(Files.exists(Path.of(Tun.DEVICE)), "no " + Tun.DEVICE + " in this machine/container");
        assumeTrue(Files.isExecutable(Path.of("/usr/sbin/ip")) || Files.isExecutable(Path.of("/sbin/ip")),
                "needs iproute2 (ip)");
    }

    @AfterEach
    void cleanUp() {
        while (!cleanups.isEmpty()) {
            try {
                cleanups.pop().run();
            } catch (RuntimeException e) {
                System.err.println("TapIT cleanup: " + e);
            }
        }
    }

    @Test
    @Timeout(60)
    void framesBothWaysWithVnetHeaderThroughANamespace() throws Exception {
        String tap = "jvt" + suffix;
        String ns = "jvns-sc-" + suffix;
        int subnet = 1 + ThreadLocalRandom.current().nextInt(250);
        String nsAddr = "10.254." + subnet + ".1";
        String ourAddr = "10.254." + subnet + ".2";
        String otherAddr = "10.254." + subnet + ".3";

        int fd = Tun.openTap(tap, Tun.IFF_TAP | Tun.IFF_NO_PI | Tun.IFF_VNET_HDR);
        cleanups.push(() -> Fds.closeQuietly(fd));
        assertEquals(tap, Tun.ifName(fd));
        assertTrue((Tun.features(fd) & Tun.IFF_VNET_HDR) != 0);
        Tun.setVnetHdrSize(fd, VNET_HDR_LEN);
        assertEquals(VNET_HDR_LEN, Tun.vnetHdrSize(fd));
        Tun.setOffload(fd, Tun.TUN_F_CSUM);
        Tun.setOffload(fd, 0);
        Fds.setNonBlocking(fd, true);

        // Interface settings without shelling out, checked through sysfs.
        Tun.setMtu(tap, 1400);
        assertEquals(1400, Tun.mtu(tap));
        Tun.setLinkUp(tap, true);
        assertTrue((Integer.decode(sysfs(null, tap, "flags")) & 1) != 0, "IFF_UP set");
        Tun.setLinkUp(tap, false);
        assertTrue((Integer.decode(sysfs(null, tap, "flags")) & 1) == 0, "IFF_UP cleared");

        run("ip", "netns", "add", ns);
        cleanups.push(() -> runQuietly("ip", "netns", "del", ns));
        run("ip", "link", "set", "dev", tap, "netns", ns);
        run("ip", "-n", ns, "addr", "add", nsAddr + "/24", "dev", tap);
        run("ip", "-n", ns, "link", "set", "dev", tap, "up");
        assertEquals(tap, Tun.ifName(fd), "the fd stays bound to the tap in its new namespace");

        try (Arena arena = Arena.ofConfined()) {
            // 1) We write a broadcast ARP request for the namespace's address: the kernel receives it.
            long rxBefore = Long.parseLong(sysfs(ns, tap, "statistics/rx_packets"));
            MemorySegment out = arena.allocate(VNET_HDR_LEN + ETH_HLEN + ARP_LEN);
            // virtio_net_hdr_v1 all zero: no checksum offload, no GSO, num_buffers 0 (ignored by tap).
            arpRequest(out.asSlice(VNET_HDR_LEN), ourAddr, nsAddr);
            assertEquals(out.byteSize(), Fds.write(fd, out, out.byteSize()));
            waitFor(() -> Long.parseLong(sysfs(ns, tap, "statistics/rx_packets")) > rxBefore,
                    "kernel counts our frame in rx_packets");

            // 2) It answers with an ARP reply to our MAC, read with its 12-byte header (readv: header | frame).
            MemorySegment hdr = arena.allocate(VNET_HDR_LEN);
            MemorySegment frame = arena.allocate(2048);
            MemorySegment iov = Iovec.allocate(arena, 2);
            Iovec.set(iov, 0, hdr.address(), hdr.byteSize());
            Iovec.set(iov, 1, frame.address(), frame.byteSize());
            long n = readFrame(fd, iov, hdr, frame, f -> isArp(f, 2, nsAddr, ourAddr));
            assertTrue(n >= VNET_HDR_LEN + ETH_HLEN + ARP_LEN, "length " + n);
            assertEquals(0, hdr.get(JAVA_BYTE, 1), "gso_type NONE");
            for (int i = 0; i < OUR_MAC.length; i++) {
                assertEquals(OUR_MAC[i], frame.get(JAVA_BYTE, i), "reply goes to our MAC");
            }

            // 3) The kernel sends on its own: a UDP packet to an unknown neighbour makes it ARP for it.
            run("ip", "netns", "exec", ns, "bash", "-c", "echo jvhost > /dev/udp/" + otherAddr + "/9");
            readFrame(fd, iov, hdr, frame, f -> isArp(f, 1, nsAddr, otherAddr));
        }
    }

    @Test
    @Timeout(30)
    void secondOpenOfASingleQueueTapIsEbusyWithHint() {
        String tap = "jvtb" + suffix;
        int fd = Tun.openTap(tap, Tun.IFF_TAP | Tun.IFF_NO_PI);
        cleanups.push(() -> Fds.closeQuietly(fd));
        NativeException e = assertThrows(NativeException.class,
                () -> Tun.openTap(tap, Tun.IFF_TAP | Tun.IFF_NO_PI));
        assertEquals(Errno.EBUSY, e.errno());
        assertEquals("ioctl TUNSETIFF", e.call());
        assertTrue(e.getMessage().startsWith("ioctl TUNSETIFF(" + tap + "): EBUSY: Device or resource busy — tap "
                + tap + " exists and belongs to another user or is in use: choose another --tap name"), e.getMessage());
    }

    @Test
    @Timeout(30)
    void multiQueueTapOpensOneFdPerQueue() {
        String tap = "jvtm" + suffix;
        int flags = Tun.IFF_TAP | Tun.IFF_NO_PI | Tun.IFF_VNET_HDR | Tun.IFF_MULTI_QUEUE;
        int q0 = Tun.openTap(tap, flags);
        cleanups.push(() -> Fds.closeQuietly(q0));
        int q1 = Tun.openTap(tap, flags);
        cleanups.push(() -> Fds.closeQuietly(q1));
        assertEquals(tap, Tun.ifName(q1));
        Tun.setQueueEnabled(q1, false);
        Tun.setQueueEnabled(q1, true);
        NativeException e = assertThrows(NativeException.class, () -> Tun.openTap(tap, Tun.IFF_TAP | Tun.IFF_NO_PI));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("not a tap with matching flags"), e.getMessage());
    }

    @Test
    @Timeout(90)
    void persistentTapOfAnotherUser() throws Exception {
        String tap = "jvtp" + suffix;
        run("ip", "tuntap", "add", "dev", tap, "mode", "tap", "user", "65534");
        cleanups.push(() -> runQuietly("ip", "tuntap", "del", "dev", tap, "mode", "tap"));

        // root (CAP_NET_ADMIN) may attach to it anyway: attaching works like opening.
        int fd = Tun.openTap(tap, Tun.IFF_TAP | Tun.IFF_NO_PI);
        assertEquals(tap, Tun.ifName(fd));
        Fds.close(fd);
        assertTrue(Files.exists(Path.of("/sys/class/net", tap)), "persistent: survives close");

        // Another unprivileged user gets EPERM and the "belongs to another user" hint ...
        assumeTrue(Files.isReadable(Path.of("/dev/net/tun")) && othersMayOpenTun(),
                "/dev/net/tun is not open to other users here (mode " + tunMode() + "): an unprivileged user gets"
                        + " EACCES before any tap check, so the EPERM hints cannot be exercised");
        String owned = probeAsNobody(tap);
        assertTrue(owned.startsWith("ERR " + Errno.EPERM + " ioctl TUNSETIFF(" + tap + "): EPERM"), owned);
        assertTrue(owned.contains("tap " + tap + " exists and belongs to another user or is in use"), owned);
        // ... and creating a new tap without CAP_NET_ADMIN gets the capability hint.
        String fresh = "jvtn" + suffix;
        cleanups.push(() -> runQuietly("ip", "link", "del", fresh));
        String noCap = probeAsNobody(fresh);
        assertTrue(noCap.contains("run as root or give CAP_NET_ADMIN, or pre-create a persistent tap owned by your "
                + "user: ip tuntap add dev " + fresh + " mode tap user "), noCap);
    }

    // ---- frames ----

    private static void arpRequest(MemorySegment f, String senderIp, String targetIp) {
        for (int i = 0; i < 6; i++) {
            f.set(JAVA_BYTE, i, (byte) 0xff);
            f.set(JAVA_BYTE, 6 + i, OUR_MAC[i]);
        }
        f.set(BE16, 12, ETH_P_ARP);
        MemorySegment arp = f.asSlice(ETH_HLEN, ARP_LEN);
        arp.set(BE16, 0, (short) 1);       // htype Ethernet
        arp.set(BE16, 2, (short) 0x0800);  // ptype IPv4
        arp.set(JAVA_BYTE, 4, (byte) 6);
        arp.set(JAVA_BYTE, 5, (byte) 4);
        arp.set(BE16, 6, (short) 1);       // request
        MemorySegment.copy(OUR_MAC, 0, arp, JAVA_BYTE, 8, 6);
        MemorySegment.copy(ip(senderIp), 0, arp, JAVA_BYTE, 14, 4);
        MemorySegment.copy(ip(targetIp), 0, arp, JAVA_BYTE, 24, 4);
    }

    private static boolean isArp(MemorySegment f, int op, String senderIp, String targetIp) {
        if (f.get(BE16, 12) != ETH_P_ARP || f.get(BE16, ETH_HLEN + 6) != op) {
            return false;
        }
        byte[] spa = new byte[4];
        byte[] tpa = new byte[4];
        MemorySegment.copy(f, JAVA_BYTE, ETH_HLEN + 14, spa, 0, 4);
        MemorySegment.copy(f, JAVA_BYTE, ETH_HLEN + 24, tpa, 0, 4);
        return java.util.Arrays.equals(spa, ip(senderIp)) && java.util.Arrays.equals(tpa, ip(targetIp));
    }

    private static byte[] ip(String dotted) {
        String[] p = dotted.split("\\.");
        byte[] b = new byte[4];
        for (int i = 0; i < 4; i++) {
            b[i] = (byte) Integer.parseInt(p[i]);
        }
        return b;
    }

    /** Reads frames (skipping e.g. IPv6 router solicitations) until {@code wanted} matches; 5 s limit. */
    private static long readFrame(int fd, MemorySegment iov, MemorySegment hdr, MemorySegment frame,
            Predicate<MemorySegment> wanted) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline) {
            if ((Poll.poll(fd, Poll.POLLIN, 200) & Poll.POLLIN) == 0) {
                continue;
            }
            long n = Fds.readv(fd, iov, 2);
            if (n == Fds.WOULD_BLOCK) {
                continue;
            }
            assertTrue(n > VNET_HDR_LEN, "every read starts with the " + VNET_HDR_LEN + "-byte header");
            if (wanted.test(frame)) {
                return n;
            }
        }
        fail("the expected frame did not arrive within 5 s");
        return -1;
    }

    // ---- processes ----

    private static boolean othersMayOpenTun() throws IOException {
        return Files.getPosixFilePermissions(Path.of("/dev/net/tun")).containsAll(
                java.util.Set.of(java.nio.file.attribute.PosixFilePermission.OTHERS_READ,
                        java.nio.file.attribute.PosixFilePermission.OTHERS_WRITE));
    }

    private static String tunMode() throws IOException {
        return java.nio.file.attribute.PosixFilePermissions.toString(
                Files.getPosixFilePermissions(Path.of("/dev/net/tun")));
    }

    private String probeAsNobody(String tap) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = String.join(":", classDir(Tun.class), classDir(TapOpenProbe.class));
        String out = run("setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", java, "-XX:-UsePerfData", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
                Native.ACCESS_FLAG, "-cp", cp, TapOpenProbe.class.getName(), tap);
        return out.strip();
    }

    private static String classDir(Class<?> c) throws Exception {
        return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    }

    private static String sysfs(String ns, String dev, String attr) {
        String file = "/sys/class/net/" + dev + "/" + attr;
        try {
            return (ns == null ? Files.readString(Path.of(file)) : run("ip", "netns", "exec", ns, "cat", file)).strip();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static void waitFor(java.util.function.BooleanSupplier cond, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out waiting until " + what);
            }
            Thread.sleep(20);
        }
    }

    private static String run(String... cmd) {
        try {
            Process p = new ProcessBuilder(List.of(cmd)).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("timed out: " + String.join(" ", cmd));
            }
            if (p.exitValue() != 0) {
                throw new IllegalStateException(String.join(" ", cmd) + " exited " + p.exitValue() + ": " + out);
            }
            return out;
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static void runQuietly(String... cmd) {
        try {
            new ProcessBuilder(List.of(cmd)).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .start().waitFor(30, TimeUnit.SECONDS);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static boolean isRoot() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("Uid:")) {
                return line.split("\\s+")[2].equals("0"); // effective uid
            }
        }
        return false;
    }
}
