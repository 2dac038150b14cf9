package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.nativ.Tun;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.file.Files;
import java.nio.file.Path;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

@Tag("privileged")
@Timeout(60)
class TapPortIT {
    @Test
    void createsSetsHeaderSizeAndOffloadsAndDisappears() {
        assumeTrue(Sh.canUseTap(), "needs root and /dev/net/tun");
        String name = "jvt" + Sh.suffix();
        try (TapPort t = TapPort.open(name, 1)) {
            assertEquals(name, t.ifName());
            assertFalse(t.preExisting());
            assertFalse(t.multiQueue());
            t.applyFeatures(bit(F_VERSION_1) | bit(NET_F_GUEST_CSUM) | bit(NET_F_GUEST_TSO4) | bit(NET_F_GUEST_TSO6));
            assertEquals(12, Tun.vnetHdrSize(t.fd(0)));
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO4 | Offloads.TUN_F_TSO6, t.offloads());
            t.applyFeatures(0);
            assertEquals(10, Tun.vnetHdrSize(t.fd(0)));
            assertTrue(Files.exists(Path.of("/sys/class/net", name)));
        } finally {
            Sh.quiet("ip", "link", "del", name);
        }
        assertFalse(Files.exists(Path.of("/sys/class/net", name)), "non-persistent tap gone with its fds");
    }

    @Test
    void attachesToPersistentTapAndLeavesItAsFound() {
        assumeTrue(Sh.canUseTap(), "needs root and /dev/net/tun");
        String name = "jvp" + Sh.suffix();
        Sh.run("ip", "tuntap", "add", "dev", name, "mode", "tap", "user", "nobody", "vnet_hdr", "multi_queue");
        try {
            int flagsBefore = TapPort.readTunFlags(name);
            assertTrue(flagsBefore > 0);
            try (TapPort t = TapPort.open(name, 2)) {
                assertTrue(t.preExisting());
                assertTrue(t.multiQueue());
                assertEquals(2, t.queues());
                t.applyFeatures(bit(NET_F_MRG_RXBUF) | bit(NET_F_GUEST_CSUM));
                assertEquals(12, Tun.vnetHdrSize(t.fd(1)));
                t.setQueueEnabled(1, false);
                t.setQueueEnabled(1, true);
            }
            assertTrue(Files.exists(Path.of("/sys/class/net", name)), "persistent tap stays");
            assertEquals(flagsBefore, TapPort.readTunFlags(name));
            // Its header size is back to the default: a fresh attach sees 10.
            try (TapPort t = TapPort.open(name, 1)) {
                assertTrue(t.multiQueue(), "attach keeps the tap's multi-queue mode");
                assertEquals(10, Tun.vnetHdrSize(t.fd(0)));
            }
        } finally {
            Sh.quiet("ip", "tuntap", "del", "dev", name, "mode", "tap", "multi_queue");
            Sh.quiet("ip", "link", "del", name);
        }
    }

    @Test
    void refusesSingleQueueTapForSeveralPairs() {
        assumeTrue(Sh.canUseTap(), "needs root and /dev/net/tun");
        String name = "jvs" + Sh.suffix();
        Sh.run("ip", "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr");
        try {
            assertThrows(IllegalArgumentException.class, () -> TapPort.open(name, 2));
        } finally {
            Sh.quiet("ip", "link", "del", name);
        }
    }

    /** Collects the log records of {@link TapPort} that contain {@code text}. */
    private static final class LogTap extends java.util.logging.Handler implements AutoCloseable {
        private final java.util.logging.Logger logger = java.util.logging.Logger.getLogger(TapPort.class.getName());
        private final String text;
        final java.util.List<String> lines = new java.util.concurrent.CopyOnWriteArrayList<>();

        LogTap(String text) {
            this.text = text;
            logger.addHandler(this);
        }

        @Override
        public void publish(java.util.logging.LogRecord r) {
            String m = java.text.MessageFormat.format(r.getMessage(), r.getParameters() == null ? new Object[0] : r.getParameters());
            if (m.contains(text)) {
                lines.add(m);
            }
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
            logger.removeHandler(this);
        }
    }

    private static boolean kernelAtLeast(int major, int minor) {
        String[] v = Sh.run("uname", "-r").trim().split("[.-]");
        int ma = Integer.parseInt(v[0]);
        return ma > major || ma == major && Integer.parseInt(v[1]) >= minor;
    }

    /**
     * The offloads follow GUEST_USO4/6 on a kernel that has USO (6.2+), and where the kernel refuses
     * them — every kernel so far takes uso4 and uso6 only together, so a guest acknowledging one of
     * them is a real refusal here — the tap runs without USO and says so in one log line.
     */
    @Test
    void usoFollowsTheGuestAndFallsBackWhereTheKernelRefuses() {
        assumeTrue(Sh.canUseTap(), "needs root and /dev/net/tun");
        String name = "jvu" + Sh.suffix();
        long base = bit(F_VERSION_1) | bit(NET_F_GUEST_CSUM) | bit(NET_F_GUEST_TSO4);
        try (LogTap log = new LogTap("refuses"); TapPort t = TapPort.open(name, 1)) {
            assertEquals(kernelAtLeast(6, 2), t.usoSupported(), "USO probe on " + Sh.run("uname", "-r").trim());
            assumeTrue(t.usoSupported(), "kernel before 6.2: no USO on taps");
            t.applyFeatures(base | bit(NET_F_GUEST_USO4) | bit(NET_F_GUEST_USO6));
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO4 | Offloads.TUN_F_USO, t.offloads());
            assertTrue(log.lines.isEmpty(), log.lines.toString());
            t.applyFeatures(base | bit(NET_F_GUEST_USO4));
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO4, t.offloads(), "USO4 alone: kernel refuses, no USO");
            t.applyFeatures(base | bit(NET_F_GUEST_USO4));
            t.applyFeatures(base | bit(NET_F_GUEST_USO6));
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO4, t.offloads());
            assertEquals(2, log.lines.size(), "one line per refused set, not per SET_FEATURES: " + log.lines);
            t.applyFeatures(base | bit(NET_F_GUEST_USO4) | bit(NET_F_GUEST_USO6));
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO4 | Offloads.TUN_F_USO, t.offloads(), "back to USO");
        } finally {
            Sh.quiet("ip", "link", "del", name);
        }
    }

    /**
     * A kernel before 6.2 (played by an ioctl that refuses USO flags with EINVAL, passing everything
     * else to the real tap): the probe finds no USO, one log line says so, and a guest's USO bits
     * leave the tap with the rest of its offloads.
     */
    @Test
    void aKernelWithoutUsoOffersNoneAndKeepsTheOtherOffloads() {
        assumeTrue(Sh.canUseTap(), "needs root and /dev/net/tun");
        String name = "jvo" + Sh.suffix();
        java.util.List<Integer> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
        TapPort.OffloadIoctl oldKernel = (fd, flags) -> {
            seen.add(flags);
            return (flags & Offloads.TUN_F_USO) != 0 ? io.jvhost.nativ.Errno.EINVAL : TapPort.KERNEL.set(fd, flags);
        };
        try (LogTap log = new LogTap("refuses"); TapPort t = TapPort.open(name, 1, oldKernel)) {
            assertFalse(t.usoSupported());
            assertEquals(1, log.lines.size(), log.lines.toString());
            assertTrue(log.lines.get(0).contains("not offered"), log.lines.get(0));
            t.applyFeatures(bit(F_VERSION_1) | bit(NET_F_GUEST_CSUM) | bit(NET_F_GUEST_TSO6) | bit(NET_F_GUEST_USO4)
                    | bit(NET_F_GUEST_USO6));
            assertEquals(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO6, t.offloads());
            assertTrue(seen.contains(Offloads.TUN_F_CSUM | Offloads.TUN_F_TSO6), "retried without USO: " + seen);
            assertEquals(2, log.lines.size(), log.lines.toString());
        } finally {
            Sh.quiet("ip", "link", "del", name);
        }
    }
}
