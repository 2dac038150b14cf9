package io.jvhost.net;

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
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicBoolean;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Backpressure, lost wake-ups, multi-queue: the worker's sleep/wake logic against a real tap. */
@Tag("privileged")
class DatapathStressIT {
    static final long MRG = bit(F_VERSION_1) | bit(RING_F_EVENT_IDX) | bit(NET_F_CSUM) | bit(NET_F_GUEST_CSUM) | bit(NET_F_MRG_RXBUF);
    /** Exchanges in the lost-wake-up stress (-Djvhost.it.exchanges=N to change). */
    static final int EXCHANGES = Integer.getInteger("jvhost.it.exchanges", 1_000_000);

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    @Test
    @Timeout(120)
    void rxBackpressureStallsWithoutSpinningAndRecovers() throws Exception {
        try (TapFixture f = new TapFixture(1, MRG, 1500, 64, 2048, WorkerConfig.defaults())) {
            f.nic.setRxRefill(0, false);
            DatagramChannel ch = Netns.in(f.ns, () -> DatagramChannel.open().bind(new InetSocketAddress(0)));
            try {
                // The host knows the guest's MAC from the start (a permanent neighbour entry): were it
                // resolved by ARP during the burst, the kernel would hold only a few datagrams
                // meanwhile and drop the rest before they reach the tap.
                f.nsExec("ip", "neigh", "replace", Packets.ipString(f.guestIp), "lladdr", "52:54:00:12:34:56",
                        "dev", f.tapName, "nud", "permanent");
                AtomicBoolean stop = new AtomicBoolean();
                InetSocketAddress guest = new InetSocketAddress(Packets.ipString(f.guestIp), 9999);
                byte[] payload = new byte[1000];
                // 64 buffers posted, no refill: send far more than that.
                Thread pump = NetDeviceIT.pumper(f.stack, 0, stop);
                for (int i = 0; i < 3000; i++) {
                    payload[0] = (byte) i;
                    ch.send(ByteBuffer.wrap(payload), guest);
                }
                Thread.sleep(500);
                stop.set(true);
                pump.join();
                assertEquals(0, f.nic.rxPosted(0), "guest buffers all used");
                QueueStats before = f.device.stats().get(0);
                assertTrue(before.get(Counter.RX_NO_BUFFERS) > 0, StatsRenderer.table(f.device.stats()));
                Thread.sleep(2000);
                QueueStats after = f.device.stats().get(0);
                long cycles = after.get(Counter.EMPTY_POLLS) - before.get(Counter.EMPTY_POLLS)
                        + after.get(Counter.WAKEUPS) - before.get(Counter.WAKEUPS);
                assertTrue(cycles < 50, "worker must sleep while the guest has no buffers, ran " + cycles + " cycles");
                String dropped = f.nsExec("cat", "/sys/class/net/" + f.tapName + "/statistics/tx_dropped").trim();
                assertTrue(Long.parseLong(dropped) > 0, "the kernel counts the frames the tap queue could not hold");
                // Resume: the backlog drains and new traffic flows.
                f.nic.setRxRefill(0, true);
                int got = 0;
                while (f.nic.receive(0, 500) != null) {
                    got++;
                }
                assertTrue(got > 100, "backlog delivered after resume: " + got);
                NetDeviceIT.udpEcho(f, new int[]{64, 1400});
            } finally {
                ch.close();
            }
        }
    }

    /** How the two sides wait in a burst of exchanges. */
    enum Mode {
        /**
         * Cheap: 16 requests in flight, the worker busy-polls (50 us) and the guest spins (50 us)
         * before sleeping, so most exchanges need no wake-up at all.
         */
        PIPELINED(50_000, 50_000, 16),
        /** One in flight; the worker sleeps at once, the guest spins 5 us then sleeps: the re-check races. */
        SPIN_THEN_SLEEP(0, 5_000, 1),
        /** One in flight, both sides sleep at once: every exchange is a kick wake-up and a call wake-up. */
        SLEEP(0, 0, 1);

        final long workerBusyPollNanos;
        final long guestSpinNanos;
        final int window;

        Mode(long workerBusyPollNanos, long guestSpinNanos, int window) {
            this.workerBusyPollNanos = workerBusyPollNanos;
            this.guestSpinNanos = guestSpinNanos;
            this.window = window;
        }

        /** Bursts of {@link #BURST}: 1 in 40 SLEEP, 1 in 40 SPIN_THEN_SLEEP, the rest PIPELINED. */
        static Mode of(int burst) {
            return switch (burst % 40) {
                case 0 -> SLEEP;
                case 20 -> SPIN_THEN_SLEEP;
                default -> PIPELINED;
            };
        }
    }

    static final int BURST = 1000;
    /** A reply not there after this long is a stall (lost kick, lost call or a stuck worker). */
    static final int EXCHANGE_TIMEOUT_MS = 5000;

    @Test
    @Timeout(300)
    void lostWakeUpStress() throws Exception {
        // The guest pings the host kernel EXCHANGES times. The kernel answers an ICMP echo inside the
        // worker's writev, so an exchange costs a kick (unless the worker polls), one writev, one readv
        // and a call (unless the guest polls). Bursts alternate between cheap pipelined/polled
        // exchanges and one-in-flight exchanges where one or both sides sleep, so that every
        // notification path — the worker arming kicks and re-checking before epoll_wait, the guest
        // enabling callbacks and re-checking before poll — runs tens of thousands of times; a lost
        // wake-up is a timeout that fails the test with the rings' state.
        try (TapFixture f = new TapFixture(1, MRG, 1500, 256, 2048, WorkerConfig.defaults())) {
            byte[] hostMac = f.stack.resolve(0, f.hostIp, 3000);
            // The SLEEP modes must really sleep at once: no adaptive spin that would hide the race.
            f.device.queuePair(0).setAdaptiveSpinNanos(0);
            byte[] payload = new byte[32];
            long[] exchangesIn = new long[Mode.values().length];
            long[] nanosIn = new long[Mode.values().length];
            long guestSleeps = 0;
            QueueStats before = f.device.stats().get(0);
            long start = System.nanoTime();
            Mode mode = null;
            int sent = 0;
            int done = 0;
            int burstEnd = 0;
            long burstStart = 0;
            while (done < EXCHANGES) {
                if (done == burstEnd) {
                    if (mode != null) {
                        nanosIn[mode.ordinal()] += System.nanoTime() - burstStart;
                    }
                    Mode m = Mode.of(done / BURST);
                    if (m != mode) {
                        mode = m;
                        f.device.queuePair(0).setBusyPollNanos(m.workerBusyPollNanos);
                    }
                    burstEnd = Math.min(EXCHANGES, done + BURST);
                    burstStart = System.nanoTime();
                }
                while (sent < burstEnd && sent - done < mode.window) {
                    assertTrue(f.nic.send(0, Packets.icmpEcho(f.stack.mac(), hostMac, f.guestIp, f.hostIp,
                            Packets.ICMP_ECHO_REQUEST, 7, sent & 0xffff, payload), EXCHANGE_TIMEOUT_MS),
                            "TX buffer at " + sent);
                    sent++;
                }
                long spinEnd = System.nanoTime() + mode.guestSpinNanos;
                while (true) {
                    GuestNic.Received r = f.nic.receive(0, 0);
                    if (r == null) {
                        if (System.nanoTime() < spinEnd) {
                            Thread.onSpinWait();
                            continue;
                        }
                        guestSleeps++;
                        if (!f.nic.awaitRxCall(0, EXCHANGE_TIMEOUT_MS)) {
                            fail(stallReport(f, done, sent, mode));
                        }
                        continue;
                    }
                    if (Packets.etherType(r.frame()) == Packets.ETHERTYPE_IPV4
                            && Packets.ipProto(r.frame()) == Packets.PROTO_ICMP) {
                        // The kernel answers in order: the reply is for the oldest request in flight.
                        assertEquals(done & 0xffff, Packets.u16(r.frame(), Packets.l4(r.frame()) + 6), "reply order");
                        break;
                    }
                    // The kernel re-validates the guest's MAC now and then (ARP probe): answer it.
                    f.stack.handle(0, r);
                }
                exchangesIn[mode.ordinal()]++;
                done++;
            }
            nanosIn[mode.ordinal()] += System.nanoTime() - burstStart;
            double secs = (System.nanoTime() - start) / 1e9;
            QueueStats after = f.device.stats().get(0);
            System.out.printf(Locale.ROOT, "lost-wake-up stress: %d exchanges in %.1f s (%.1f us each); per mode %s (us each %s);"
                            + " guest slept %d times, worker woke %d times, %d TX kicks, %d RX calls%n", EXCHANGES, secs,
                    secs * 1e6 / EXCHANGES, Arrays.toString(exchangesIn), perExchange(nanosIn, exchangesIn), guestSleeps,
                    after.get(Counter.WAKEUPS) - before.get(Counter.WAKEUPS),
                    after.get(Counter.TX_KICKS) - before.get(Counter.TX_KICKS),
                    after.get(Counter.RX_CALLS) - before.get(Counter.RX_CALLS));
            System.out.println(StatsRenderer.table(f.device.stats()));
            System.out.println(StatsRenderer.percentiles("service time", after.serviceTime()));
            System.out.println("what a stall report shows, here at the end:\n" + stallReport(f, done, sent, mode));
            // The wake-up paths really ran: both sides slept, the guest's kicks woke the worker, the
            // worker's calls woke the guest.
            long sleepExchanges = exchangesIn[Mode.SLEEP.ordinal()];
            if (sleepExchanges > 0) {
                assertTrue(guestSleeps >= sleepExchanges, "guest slept");
                assertTrue(after.get(Counter.WAKEUPS) - before.get(Counter.WAKEUPS) >= sleepExchanges / 2, "worker slept");
                assertTrue(after.get(Counter.TX_KICKS) - before.get(Counter.TX_KICKS) >= sleepExchanges / 2, "kicks");
                assertTrue(after.get(Counter.RX_CALLS) - before.get(Counter.RX_CALLS) >= sleepExchanges / 2, "calls");
            }
            assertEquals(0, after.totalDrops(), StatsRenderer.table(f.device.stats()));
        }
    }

    private static String perExchange(long[] nanos, long[] n) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < n.length; i++) {
            b.append(i == 0 ? "" : ", ").append(Mode.values()[i]).append(' ')
                    .append(n[i] == 0 ? "-" : String.format(Locale.ROOT, "%.1f", nanos[i] / 1e3 / n[i]));
        }
        return b.toString();
    }

    private static String stallReport(TapFixture f, int done, int sent, Mode mode) {
        return "stall: no reply to exchange " + done + " (" + (sent - done) + " in flight, " + mode + ") within "
                + EXCHANGE_TIMEOUT_MS + " ms\n"
                + "guest view of the rings:\n" + f.nic.describe(0) + "\n"
                + f.device.queuePair(0).diagnostics() + "\n" + StatsRenderer.table(f.device.stats());
    }

    @Test
    @Timeout(120)
    void twoQueuePairsCarryTrafficAtOnce() throws Exception {
        long mq = MRG | bit(NET_F_MQ);
        try (TapFixture f = new TapFixture(2, mq, 1500, 128, 2048, WorkerConfig.defaults())) {
            assertTrue(f.device.tap().multiQueue());
            AtomicBoolean stop = new AtomicBoolean();
            Thread p0 = NetDeviceIT.pumper(f.stack, 0, stop);
            Thread p1 = NetDeviceIT.pumper(f.stack, 1, stop);
            List<DatagramChannel> chans = new ArrayList<>();
            try {
                for (int i = 0; i < 16; i++) {
                    DatagramChannel ch = Netns.in(f.ns, () -> DatagramChannel.open().bind(new InetSocketAddress(0)));
                    ch.socket().setSoTimeout(3000);
                    ch.connect(new InetSocketAddress(Packets.ipString(f.guestIp), GuestStack.UDP_ECHO_PORT));
                    chans.add(ch);
                }
                ByteBuffer in = ByteBuffer.allocate(2048);
                for (int round = 0; round < 20; round++) {
                    for (DatagramChannel ch : chans) {
                        ch.write(ByteBuffer.wrap(new byte[]{(byte) round, 1, 2, 3}));
                    }
                    for (DatagramChannel ch : chans) {
                        in.clear();
                        ch.socket().getChannel().configureBlocking(true);
                        var sel = java.nio.channels.Selector.open();
                        ch.configureBlocking(false);
                        ch.register(sel, java.nio.channels.SelectionKey.OP_READ);
                        assertTrue(sel.select(3000) > 0, "echo\n" + StatsRenderer.table(f.device.stats()));
                        sel.close();
                        ch.configureBlocking(true);
                        ch.read(in);
                        assertEquals((byte) round, in.get(0));
                    }
                }
            } finally {
                stop.set(true);
                p0.join();
                p1.join();
                for (DatagramChannel ch : chans) {
                    ch.close();
                }
            }
            String table = StatsRenderer.table(f.device.stats());
            System.out.println(table);
            for (QueueStats s : f.device.stats()) {
                assertTrue(s.get(Counter.RX_FRAMES) > 0 && s.get(Counter.TX_FRAMES) > 0, "both pairs used\n" + table);
            }
            assertTrue(Files.exists(Path.of("/proc/self")));
        }
    }
}
