package io.jvhost.net;

import io.jvhost.device.NetDevice;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.demo.Netns;
import io.jvhost.driver.RingOptions;
import io.jvhost.driver.net.Packets;
import io.jvhost.stats.Counter;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.net.InetAddress;
import java.util.concurrent.atomic.AtomicBoolean;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Java driver ↔ vhost-user socket ↔ jvhost (NetDevice) ↔ tap ↔ kernel in a netns. */
@Tag("privileged")
@Timeout(120)
class VhostUserNetIT {
    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    @Test
    void pingAndUdpOverVhostUser() throws Exception {
        try (TapFixture f = new TapFixture(1, NetDeviceIT.MRG, 9000, 256, 9100, WorkerConfig.defaults(), true)) {
            AtomicBoolean stop = new AtomicBoolean();
            Thread p = NetDeviceIT.pumper(f.stack, 0, stop);
            try {
                InetAddress guest = InetAddress.getByName(Packets.ipString(f.guestIp));
                for (int i = 0; i < 3; i++) {
                    assertTrue(Netns.in(f.ns, () -> guest.isReachable(2000)), "ping " + i + "\n" + StatsRenderer.table(f.device.stats()) + f.nic.rxPosted(0));
                }
            } finally {
                stop.set(true);
                p.join();
            }
            NetDeviceIT.udpEcho(f, new int[]{64, 1472, 8972});
            assertTrue(f.device.stats().get(0).get(Counter.RX_FRAMES) > 0, StatsRenderer.table(f.device.stats()));
            assertEquals(12, f.device.tap().hdrSize());
        }
    }

    /**
     * The Java driver on jvhost's packed rings and with IN_ORDER (split and packed), over the
     * vhost-user socket: pings and UDP echoes of 64 to 8972 bytes (mergeable RX buffers across a
     * 9000-byte MTU), on a ring size that is not a power of two where the format allows it.
     */
    @ParameterizedTest
    @CsvSource({"packed,256", "packed,255", "split-inorder,256", "packed-inorder,255"})
    void pingAndUdpOnEachRingFormat(String name, int ringSize) throws Exception {
        RingOptions rings = RingOptions.parse(name);
        try (TapFixture f = new TapFixture(1, rings.applyTo(NetDeviceIT.MRG), 9000, ringSize, 9100, WorkerConfig.defaults(), true)) {
            assertEquals(rings, f.nic.rings(), "the rings negotiated");
            assertEquals(rings.features(), f.device.negotiatedFeatures() & RingOptions.RING_BITS, "jvhost runs them too");
            AtomicBoolean stop = new AtomicBoolean();
            Thread p = NetDeviceIT.pumper(f.stack, 0, stop);
            try {
                InetAddress guest = InetAddress.getByName(Packets.ipString(f.guestIp));
                for (int i = 0; i < 3; i++) {
                    assertTrue(Netns.in(f.ns, () -> guest.isReachable(2000)), "ping " + i + "\n" + StatsRenderer.table(f.device.stats()));
                }
            } finally {
                stop.set(true);
                p.join();
            }
            NetDeviceIT.udpEcho(f, new int[]{64, 1472, 8972});
            assertEquals(0, f.device.stats().get(0).totalDrops(), StatsRenderer.table(f.device.stats()));
        }
    }

    @Test
    void twoQueuePairsOverVhostUser() throws Exception {
        try (TapFixture f = new TapFixture(2, NetDeviceIT.MRG | bit(NET_F_MQ), 1500, 128, 2048, WorkerConfig.defaults(), true)) {
            assertEquals(2, f.device.maxQueuePairs());
            AtomicBoolean stop = new AtomicBoolean();
            Thread p0 = NetDeviceIT.pumper(f.stack, 0, stop);
            Thread p1 = NetDeviceIT.pumper(f.stack, 1, stop);
            try {
                InetAddress guest = InetAddress.getByName(Packets.ipString(f.guestIp));
                assertTrue(Netns.in(f.ns, () -> guest.isReachable(2000)));
            } finally {
                stop.set(true);
                p0.join();
                p1.join();
            }
        }
    }
}
