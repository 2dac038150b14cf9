package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * TX against a kernel that pushes back or refuses, for real.
 *
 * <p>A tap write returns EAGAIN only when the queue's send buffer (TUNSETSNDBUF) is exceeded by
 * frames the kernel still holds; by default it is INT_MAX, so it never happens (docs/DATAPATH.md).
 * Here the device caps it and the tap is a bridge port whose only other port (a veth) has a slow
 * token-bucket qdisc: the frames the guest sends are flooded to the veth and queue in the qdisc,
 * still charged to the tap, so writes return EAGAIN until the qdisc drains. The guest's frames must
 * all get through — held, not dropped — with the worker asleep on EPOLLOUT meanwhile.
 *
 * <p>What a tap write can do instead of EAGAIN by default — fail (EIO while the interface is down)
 * — must drop and count the frame and return its chain, and traffic must resume once the link is up.
 */
@Tag("privileged")
class TxBackpressureIT {
    static final long FEATURES = bit(F_VERSION_1) | bit(RING_F_EVENT_IDX) | bit(NET_F_MRG_RXBUF);
    /** Local experimental EtherType: neither bridge netfilter nor the IP stack looks at it. */
    static final int ETHERTYPE_EXPERIMENTAL = 0x88b5;
    static final int SNDBUF = 32 * 1024;
    static final int FRAMES = 400;
    static final int FRAME_LEN = 1000;

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    static byte[] frame(int i) {
        byte[] f = new byte[FRAME_LEN];
        f[0] = 0x02; // unknown unicast destination: the bridge floods it to the veth
        f[5] = (byte) 0x99;
        f[6] = 0x52;
        f[7] = 0x54;
        f[11] = 0x57;
        f[12] = (byte) (ETHERTYPE_EXPERIMENTAL >> 8);
        f[13] = (byte) ETHERTYPE_EXPERIMENTAL;
        f[14] = (byte) (i >> 8);
        f[15] = (byte) i;
        return f;
    }

    @Test
    @Timeout(120)
    void eagainHoldsFramesUntilTheKernelTakesThem() throws Exception {
        try (TapFixture f = new TapFixture(1, FEATURES, 1500, 256, 2048, WorkerConfig.defaults(), false,
                c -> c.withTapSndBuf(SNDBUF))) {
            // tap → bridge → veth d0 (8 Mbit/s token bucket, deep queue) → d1
            f.nsExec("ip", "link", "add", "br0", "type", "bridge");
            f.nsExec("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1");
            f.nsExec("ip", "link", "set", "d0", "master", "br0");
            f.nsExec("ip", "link", "set", f.tapName, "master", "br0");
            f.nsExec("tc", "qdisc", "add", "dev", "d0", "root", "tbf", "rate", "8mbit", "burst", "1600",
                    "limit", "10000000");
            for (String d : new String[]{"d1", "d0", "br0"}) {
                f.nsExec("ip", "link", "set", d, "up");
            }
            awaitForwarding(f);
            // No adaptive spin: it would count its (bounded, 50 us) spins as idle cycles whenever the
            // worker caught up with the guest once, and this test counts idle cycles to tell a sleep
            // on EPOLLOUT from a spin.
            f.device.queuePair(0).setAdaptiveSpinNanos(0);
            long d1Before = counter(f, "d1", "rx_packets");
            QueueStats before = f.device.stats().get(0);
            for (int i = 0; i < FRAMES; i++) {
                assertTrue(f.nic.send(0, frame(i), 10_000), "TX buffer for frame " + i);
            }
            assertTrue(f.nic.flushTx(0, 30_000), "every chain returned\n" + StatsRenderer.table(f.device.stats()));
            QueueStats after = f.device.stats().get(0);
            String table = StatsRenderer.table(f.device.stats());
            long backpressure = after.get(Counter.TX_BACKPRESSURE) - before.get(Counter.TX_BACKPRESSURE);
            long sent = after.get(Counter.TX_FRAMES) - before.get(Counter.TX_FRAMES);
            long idle = after.get(Counter.EMPTY_POLLS) - before.get(Counter.EMPTY_POLLS);
            System.out.printf("TX backpressure: %d frames, %d EAGAINs, %d idle cycles%n%s%n", sent, backpressure, idle, table);
            assertTrue(backpressure > 0, "the tap pushed back (EAGAIN)\n" + table);
            assertEquals(FRAMES, sent, "every frame written, none dropped\n" + table);
            assertEquals(0, after.totalDrops(), table);
            // Held chains wait for EPOLLOUT in epoll_wait: a handful of cycles per EAGAIN, not a spin.
            assertTrue(idle < 20 * backpressure + 200, "worker slept while backpressured: " + idle + " idle cycles");
            // The frames all came out on the far side of the slow link (plus whatever the kernel sent itself).
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (counter(f, "d1", "rx_packets") - d1Before < FRAMES && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
            assertTrue(counter(f, "d1", "rx_packets") - d1Before >= FRAMES, "frames delivered past the qdisc");
            assertEquals(0, tbfDropped(f), "the qdisc dropped nothing: the guest was held back instead");
        }
    }

    @Test
    @Timeout(120)
    void writeErrorsDropAndCountTheFrameAndReturnTheChain() throws Exception {
        try (TapFixture f = new TapFixture(1, FEATURES, 1500, 64, 2048, WorkerConfig.defaults())) {
            f.nsExec("ip", "link", "set", f.tapName, "down"); // tap writes now fail with EIO
            QueueStats before = f.device.stats().get(0);
            for (int i = 0; i < 100; i++) { // more than the ring: chains must come back
                assertTrue(f.nic.send(0, frame(i), 5000), "TX buffer for frame " + i);
            }
            assertTrue(f.nic.flushTx(0, 5000), "chains returned");
            QueueStats after = f.device.stats().get(0);
            String table = StatsRenderer.table(f.device.stats());
            assertEquals(100, after.drops(DropReason.TX_TAP_ERROR) - before.drops(DropReason.TX_TAP_ERROR), table);
            assertEquals(0, after.get(Counter.TX_FRAMES) - before.get(Counter.TX_FRAMES), table);
            // Link up again: frames go through.
            f.nsExec("ip", "link", "set", f.tapName, "up");
            long rx = counter(f, f.tapName, "rx_packets");
            for (int i = 0; i < 10; i++) {
                assertTrue(f.nic.send(0, frame(i), 5000));
            }
            assertTrue(f.nic.flushTx(0, 5000));
            assertEquals(10, f.device.stats().get(0).get(Counter.TX_FRAMES) - after.get(Counter.TX_FRAMES));
            assertEquals(10, counter(f, f.tapName, "rx_packets") - rx, "the kernel took them");
        }
    }

    /** A fresh bridge port learns/forwards only after the link settles; wait until it forwards. */
    private static void awaitForwarding(TapFixture f) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline) {
            String s = f.nsExec("bridge", "link", "show");
            if (s.contains(f.tapName) && s.lines().filter(l -> l.contains("master br0"))
                    .allMatch(l -> l.contains("state forwarding"))) {
                return;
            }
            Thread.sleep(50);
        }
        fail("bridge ports not forwarding: " + f.nsExec("bridge", "link", "show"));
    }

    static long counter(TapFixture f, String dev, String name) {
        return Long.parseLong(f.nsExec("cat", "/sys/class/net/" + dev + "/statistics/" + name).trim());
    }

    private static long tbfDropped(TapFixture f) {
        Matcher m = Pattern.compile("dropped (\\d+)").matcher(f.nsExec("tc", "-s", "qdisc", "show", "dev", "d0"));
        assertTrue(m.find());
        return Long.parseLong(m.group(1));
    }
}
