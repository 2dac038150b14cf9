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
}
