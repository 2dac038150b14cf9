package io.jvhost.it;

import io.jvhost.demo.Netns;
import io.jvhost.device.NetDevice;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.engine.QueuePair;
import io.jvhost.engine.Worker;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.engine.WorkerPool;
import io.jvhost.net.Sh;
import io.jvhost.net.TapFixture;
import io.jvhost.stats.Counter;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.stats.WorkerLoad;
import io.jvhost.stats.WorkerStats;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserServer;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * One worker thread serves a healthy device (real tap in a namespace, the Java guest answering UDP
 * echo over vhost-user) and six hostile ones ({@link HostileFrontEnd}: a descriptor loop, a head out of
 * range, an avail index jump, a buffer outside memory, a memfd shrunk under the device, a kick storm),
 * which attack one after another while the namespace keeps echoing datagrams through the healthy one.
 * Each hostile device ends up broken for its own reason (the storm breaks nothing); the healthy one
 * never misses an echo, counts no drop and no fault, and the worker thread lives on.
 */
@Tag("privileged")
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class SharedWorkerHostileIT {
    private static final Duration WAIT = Duration.ofSeconds(15);

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    @Test
    void hostileDevicesOnTheWorkerOfAHealthyOne() throws Exception {
        long mrg = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
        String sfx = Sh.suffix();
        List<AutoCloseable> hostile = new ArrayList<>();
        List<NetDevice> devices = new ArrayList<>();
        AtomicBoolean stop = new AtomicBoolean();
        try (WorkerPool pool = new WorkerPool(new WorkerPool.Settings("hw", 1, new int[0], Map.of(), WorkerConfig.defaults()));
             TapFixture f = new TapFixture(1, mrg, 1500, 256, 2048, WorkerConfig.defaults(), true, c -> c.withPool(pool))) {
            AtomicLong echoes = new AtomicLong();
            AtomicLong missed = new AtomicLong();
            Thread pump = Thread.ofPlatform().name("guest-pump").start(() -> {
                while (!stop.get()) {
                    f.stack.pump(0, 50);
                }
            });
            Thread echo = Thread.ofPlatform().name("udp-echo").start(() -> echoLoop(f, stop, echoes, missed));
            try {
                awaitAtLeast(echoes, 20, "echoes before any attack");
                int i = 0;
                for (HostileFrontEnd.Mode mode : HostileFrontEnd.Mode.values()) {
                    String name = "h" + i;
                    NetDevice d = new NetDevice(NetDevice.Config.of(name, "jvh" + sfx + i, 1).withPool(pool));
                    devices.add(d);
                    String sock = "/tmp/jvhost-hostile-" + sfx + "-" + i + ".sock";
                    VhostUserServer srv = VhostUserServer.listen(name, sock, d, FeatureSet.all());
                    hostile.add(srv);
                    long before = echoes.get();
                    hostile.add(0, HostileFrontEnd.attack(mode, sock));
                    if (mode.breaks != null) {
                        assertTrue(Jvhost.await(() -> d.queuePair(0).brokenReason(QueuePair.TX) != null, WAIT),
                                mode + ": the device's TX ring did not break");
                        assertEquals(mode.breaks, d.queuePair(0).brokenReason(QueuePair.TX),
                                mode + ": " + d.queuePair(0).brokenMessage(QueuePair.TX));
                    }
                    awaitAtLeast(echoes, before + 20, "echoes after the " + mode + " attack");
                    i++;
                }
                Worker w = pool.workers().get(0);
                assertEquals(1, pool.workers().size());
                assertEquals(1 + HostileFrontEnd.Mode.values().length, w.queuePairs(), "all on the one worker");
                // Everything at once for a while, the kick storm going on.
                long before = echoes.get();
                awaitAtLeast(echoes, before + 200, "echoes with every hostile device on the worker");
            } finally {
                stop.set(true);
                echo.join(10_000);
                pump.join(10_000);
            }
            WorkerStats ws = pool.workers().get(0).stats();
            String report = StatsRenderer.table(f.device.stats()) + StatsRenderer.workers(List.of(ws));
            System.out.println("healthy device beside six hostile ones on one worker: " + echoes.get() + " echoes, "
                    + missed.get() + " missed\n" + report);
            assertEquals(0, missed.get(), "echoes lost\n" + report);
            assertEquals(0, f.device.stats().get(0).totalDrops(), report);
            assertEquals(0, f.device.stats().get(0).get(Counter.MEMORY_FAULTS), report);
            assertNull(f.device.queuePair(0).brokenReason(QueuePair.RX), report);
            assertNull(f.device.queuePair(0).brokenReason(QueuePair.TX), report);
            assertTrue(pool.workers().get(0).running(), "worker thread died");
            assertTrue(ws.get(WorkerLoad.PAIR_FAULTS) >= 1, "the shrink was contained by the worker: " + ws);
            for (AutoCloseable c : hostile) {
                c.close();
            }
            hostile.clear();
            assertTrue(Jvhost.await(() -> pool.workers().get(0).queuePairs() == 1, WAIT),
                    "the hostile devices left the worker with their sessions: " + pool.workers().get(0).stats());
        } finally {
            stop.set(true);
            for (AutoCloseable c : hostile) {
                try {
                    c.close();
                } catch (Exception ignored) {
                    // cleanup after a failure
                }
            }
            for (NetDevice d : devices) {
                d.close();
            }
        }
    }

    /** From the namespace: a datagram to the guest's echo port and its echo back, again and again. */
    private static void echoLoop(TapFixture f, AtomicBoolean stop, AtomicLong echoes, AtomicLong missed) {
        try (DatagramSocket s = Netns.in(f.ns, () -> new DatagramSocket(0))) {
            s.setSoTimeout(3000);
            InetAddress guest = InetAddress.getByName(Packets.ipString(f.guestIp));
            byte[] out = new byte[200];
            byte[] in = new byte[2048];
            long seq = 0;
            while (!stop.get()) {
                seq++;
                Arrays.fill(out, (byte) seq);
                s.send(new DatagramPacket(out, out.length, guest, GuestStack.UDP_ECHO_PORT));
                try {
                    DatagramPacket p = new DatagramPacket(in, in.length);
                    s.receive(p);
                    if (p.getLength() == out.length && in[0] == (byte) seq) {
                        echoes.incrementAndGet();
                    }
                } catch (SocketTimeoutException e) {
                    missed.incrementAndGet();
                }
            }
        } catch (Exception e) {
            missed.incrementAndGet();
            throw new IllegalStateException(e);
        }
    }

    private static void awaitAtLeast(AtomicLong v, long n, String what) throws InterruptedException {
        assertTrue(Jvhost.await(() -> v.get() >= n, WAIT), what + ": " + v.get() + " < " + n);
    }
}
