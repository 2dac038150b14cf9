package io.jvhost.engine;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import io.jvhost.nativ.Poll;
import io.jvhost.net.SeqPacketPair;
import io.jvhost.stats.Counter;
import io.jvhost.stats.WorkerLoad;
import io.jvhost.stats.WorkerStats;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.virtq.VirtqError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Several devices' queue pairs on one worker of a {@link WorkerPool} (no root: each device's "tap" is
 * an AF_UNIX SOCK_SEQPACKET socket, the guests are {@link io.jvhost.driver.net.GuestNic}s over real
 * vhost-user sockets): the duty cycle shares the worker between them, a device that faults on guest
 * memory stops only itself — the fault is charged to it and not to its neighbour, whatever point of
 * the cycle the JVM raises it at — and devices join and leave while another one keeps moving frames.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class SharedWorkerTest {
    static final int HDR = 12;
    static final int WAIT_MS = 10_000;

    static WorkerPool oneWorker(String name) {
        return new WorkerPool(new WorkerPool.Settings(name, 1, new int[0], Map.of(), WorkerConfig.defaults()));
    }

    /**
     * Both devices' TX rings are filled while the worker is held in a command, then released: in the
     * order the frames leave the worker (one shared "tap" socket keeps it), each device has its
     * weight's worth per cycle, so when one has sent all its frames the other has sent nearly as many
     * (within 20 %): neither waits for the other to empty its ring.
     */
    @Test
    void twoBusyPairsShareTheWorkerCycleByCycle() throws Exception {
        int ring = 256;
        // Few enough frames that all of them fit in the shared socket's default send buffer (the
        // order must be the worker's, not the socket's pushing back on one device), and a weight small
        // against them, so the shares show.
        int frames = 96;
        int weight = 8;
        int[] tap = SeqPacketPair.open();
        Fds.setNonBlocking(tap[0], true);
        // One socket for both devices' frames (a dup: one epoll set takes an fd number once).
        int tapB = Fds.dup(tap[0]);
        try (WorkerPool pool = oneWorker("fair");
             PoolDevice a = new PoolDevice("fair-a", pool, tap[0], weight);
             PoolDevice b = new PoolDevice("fair-b", pool, tapB, weight);
             PoolDevice.Guest ga = new PoolDevice.Guest(a, ring);
             PoolDevice.Guest gb = new PoolDevice.Guest(b, ring)) {
            Worker w = pool.workers().get(0);
            assertEquals(2, w.queuePairs());
            CountDownLatch held = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            Thread holder = Thread.ofPlatform().start(() -> w.call(() -> {
                held.countDown();
                release.await();
                return null;
            }));
            assertTrue(held.await(WAIT_MS, TimeUnit.MILLISECONDS));
            byte[] fa = frame(60, 0xa1);
            byte[] fb = frame(60, 0xb2);
            ga.nic.prefillTx(0, fa, HDR, 60);
            gb.nic.prefillTx(0, fb, HDR, 60);
            for (int i = 0; i < frames; i++) {
                assertTrue(ga.nic.sendPrefilled(0, 60, 0, 0, 0, 0, 0, 0, 1000));
                assertTrue(gb.nic.sendPrefilled(0, 60, 0, 0, 0, 0, 0, 0, 1000));
            }
            int[][] order = new int[1][];
            Thread reader = Thread.ofPlatform().start(() -> order[0] = readIds(tap[1], 2 * frames, 0xa1, 0xb2));
            release.countDown();
            holder.join(WAIT_MS);
            reader.join(WAIT_MS);
            assertNotNull(order[0], "the reader failed");
            // Up to the moment the first device has sent everything: how far did the other get?
            int ca = 0;
            int cb = 0;
            for (int i = 0; ca < frames && cb < frames; i++) {
                if (order[0][i] == 0) {
                    ca++;
                } else {
                    cb++;
                }
            }
            StringBuilder runs = new StringBuilder();
            for (int i = 0, r = 0; i < 2 * frames; i++) {
                r++;
                if (i + 1 == 2 * frames || order[0][i + 1] != order[0][i]) {
                    runs.append(order[0][i] == 0 ? "a" : "b").append(r).append(' ');
                    r = 0;
                }
            }
            System.out.printf("when the first device had sent its %d frames: a=%d b=%d; runs out of the worker: %s%n",
                    frames, ca, cb, runs);
            assertEquals(0, a.pair.counters().get(Counter.TX_BACKPRESSURE) + b.pair.counters().get(Counter.TX_BACKPRESSURE),
                    "the shared socket pushed back: the order is not the worker's alone");
            assertTrue(Math.min(ca, cb) >= 0.8 * frames, "a=" + ca + " b=" + cb + ": " + runs);
            assertEquals(frames, a.pair.counters().get(Counter.TX_FRAMES));
            assertEquals(frames, b.pair.counters().get(Counter.TX_FRAMES));
        } finally {
            Fds.closeQuietly(tap[0]);
            Fds.closeQuietly(tapB);
            Fds.closeQuietly(tap[1]);
        }
    }

    /** Reads {@code n} records from {@code fd}; returns 0 / 1 per record by the fill byte of its frame. */
    private static int[] readIds(int fd, int n, int idA, int idB) {
        int[] out = new int[n];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(2048);
            for (int i = 0; i < n; i++) {
                assertTrue(Poll.poll(fd, Poll.POLLIN, WAIT_MS) != 0, "only " + i + " frames came out");
                long len = Fds.read(fd, s, s.byteSize());
                assertEquals(HDR + 60, len);
                int id = s.get(ValueLayout.JAVA_BYTE, HDR + 20) & 0xff;
                assertTrue(id == idA || id == idB, "frame " + i + " from nobody: " + id);
                out[i] = id == idA ? 0 : 1;
            }
        }
        return out;
    }

    /**
     * The victim's front-end shrinks its memfd under traffic, three sessions in a row, while a
     * bystander on the same worker moves frames both ways all along. Each time only the victim's pair
     * breaks ({@link VirtqError#MEMORY_FAULT}); the bystander never faults, never drops, never stops,
     * and the worker thread lives on.
     */
    @Test
    void aFaultingDeviceStopsOnlyItselfOnASharedWorker() throws Exception {
        int[] vt = SeqPacketPair.open();
        int[] bt = SeqPacketPair.open();
        for (int fd : new int[] {vt[0], vt[1], bt[0], bt[1]}) {
            Fds.setNonBlocking(fd, true);
        }
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> threads = new ArrayList<>();
        try (WorkerPool pool = oneWorker("fault");
             PoolDevice victim = new PoolDevice("victim", pool, vt[0]);
             PoolDevice bystander = new PoolDevice("bystander", pool, bt[0]);
             PoolDevice.Guest other = new PoolDevice.Guest(bystander, 256)) {
          try {
            AtomicLong byRx = new AtomicLong();
            AtomicLong byTx = new AtomicLong();
            threads.add(flood(bt[1], stop));
            threads.add(guestLoop(other, stop, byRx, null));
            threads.add(drain(bt[1], stop, byTx));
            awaitAtLeast(byRx::get, 100, "bystander RX before");
            for (int round = 0; round < 3; round++) {
                AtomicBoolean roundStop = new AtomicBoolean();
                AtomicLong vRx = new AtomicLong();
                PoolDevice.Guest g = new PoolDevice.Guest(victim, 256);
                List<Throwable> guestFaults = new ArrayList<>();
                Thread vf = flood(vt[1], roundStop);
                Thread vg = guestLoop(g, roundStop, vRx, guestFaults);
                Thread vd = drain(vt[1], roundStop, new AtomicLong());
                try {
                    awaitAtLeast(vRx::get, 50, "victim RX before the shrink");
                    assertEquals(2, pool.workers().get(0).queuePairs());
                    Mman.ftruncate(g.mem.fd(), round % 2 == 0 ? 24 * 1024 : 0);
                    long t0 = System.nanoTime();
                    while (victim.pair.brokenReason(QueuePair.RX) == null && vg.isAlive()
                            && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
                        Thread.sleep(1);
                    }
                    if (victim.pair.brokenReason(QueuePair.RX) == null) {
                        // The guest thread faulted first while the device held nothing of its memory:
                        // nudge the device (see MemoryShrinkTest).
                        try {
                            g.nic.recycleRxAndKick(0);
                        } catch (Throwable expected) {
                            // the used ring is gone too (shrunk to 0)
                        }
                    }
                    assertEquals(VirtqError.MEMORY_FAULT, awaitBroken(victim.pair, QueuePair.RX));
                    assertEquals(VirtqError.MEMORY_FAULT, awaitBroken(victim.pair, QueuePair.TX));
                } finally {
                    roundStop.set(true);
                    vf.join(WAIT_MS);
                    vg.join(WAIT_MS);
                    vd.join(WAIT_MS);
                    g.client.close();
                    awaitSessionEnd(victim);
                    g.nic.close();
                    g.mem.close();
                }
                assertNull(bystander.pair.brokenReason(QueuePair.RX), bystander.pair.brokenMessage(QueuePair.RX));
                assertNull(bystander.pair.brokenReason(QueuePair.TX), bystander.pair.brokenMessage(QueuePair.TX));
                long rx0 = byRx.get();
                long tx0 = byTx.get();
                awaitAtLeast(byRx::get, rx0 + 100, "bystander RX after round " + round);
                awaitAtLeast(byTx::get, tx0 + 100, "bystander TX after round " + round);
                assertEquals(1, pool.workers().get(0).queuePairs(), "the victim left the worker");
            }
            assertEquals(0, bystander.pair.counters().get(Counter.MEMORY_FAULTS));
            assertEquals(0, bystander.pair.counters().totalDrops());
            assertTrue(victim.pair.counters().get(Counter.MEMORY_FAULTS) >= 3);
            Worker w = pool.workers().get(0);
            assertTrue(w.running(), "worker thread died");
            WorkerStats st = w.stats();
            assertTrue(st.get(WorkerLoad.PAIR_FAULTS) >= 3, "faults counted on the worker: " + st);
            System.out.println("worker after three faulting sessions: " + st.queuePairs() + ", pair faults "
                    + st.get(WorkerLoad.PAIR_FAULTS) + ", bystander rx " + byRx.get() + " tx " + byTx.get());
          } finally {
            stopAll(stop, threads);
          }
        } finally {
            stopAll(stop, threads);
            for (int fd : new int[] {vt[0], vt[1], bt[0], bt[1]}) {
                Fds.closeQuietly(fd);
            }
        }
    }

    /**
     * The sharpest case for charging a fault to the right pair: the victim's rings are idle and its
     * memory vanishes, so the worker's first touch is a plain Java read of its avail ring (SIGBUS, no
     * system call after it in that pair's share of the cycle), while the bystander on the same worker
     * moves frames (its system calls are where the JVM would otherwise raise the victim's fault).
     * Twenty rounds: the victim breaks every time, the bystander never.
     */
    @Test
    void aFaultInARingReadIsChargedToItsOwnPair() throws Exception {
        int[] vt = SeqPacketPair.open();
        int[] bt = SeqPacketPair.open();
        for (int fd : new int[] {vt[0], vt[1], bt[0], bt[1]}) {
            Fds.setNonBlocking(fd, true);
        }
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> threads = new ArrayList<>();
        int kick = EventFd.create(0, true);
        int call = EventFd.create(0, true);
        try (WorkerPool pool = oneWorker("ringread");
             PoolDevice victim = new PoolDevice("idle-victim", pool, vt[0]);
             PoolDevice bystander = new PoolDevice("busy-bystander", pool, bt[0]);
             PoolDevice.Guest other = new PoolDevice.Guest(bystander, 256)) {
          try {
            AtomicLong byRx = new AtomicLong();
            threads.add(flood(bt[1], stop));
            threads.add(guestLoop(other, stop, byRx, null));
            threads.add(drain(bt[1], stop, new AtomicLong()));
            awaitAtLeast(byRx::get, 100, "bystander RX before");
            for (int round = 0; round < 20; round++) {
                try (DriverMemory m = DriverMemory.memfd("ringread", 1 << 20, DriverMemory.DEFAULT_GPA_BASE);
                     VhostUserClient c = VhostUserClient.connect(victim.path)) {
                    c.negotiate(PoolDevice.FEATURES, VhostUserMessage.PROTOCOL_SUPPORTED);
                    c.setMemTable(List.of(m.region()));
                    DriverVirtqueue tx = new DriverVirtqueue(m, 256, PoolDevice.FEATURES, 0, 0);
                    c.setupRing(1, tx, kick, call);
                    c.setVringEnable(1, true);
                    assertEquals(2, pool.workers().get(0).queuePairs());
                    Mman.ftruncate(m.fd(), 0);
                    EventFd.signal(kick);
                    assertEquals(VirtqError.MEMORY_FAULT, awaitBroken(victim.pair, QueuePair.TX), "round " + round);
                }
                awaitSessionEnd(victim);
                assertNull(bystander.pair.brokenReason(QueuePair.RX), "round " + round + ": "
                        + bystander.pair.brokenMessage(QueuePair.RX));
                assertNull(bystander.pair.brokenReason(QueuePair.TX), "round " + round + ": "
                        + bystander.pair.brokenMessage(QueuePair.TX));
                assertEquals(0, bystander.pair.counters().get(Counter.MEMORY_FAULTS), "round " + round);
            }
            long rx0 = byRx.get();
            awaitAtLeast(byRx::get, rx0 + 100, "bystander RX after");
            assertTrue(victim.pair.counters().get(Counter.MEMORY_FAULTS) >= 20);
            assertTrue(pool.workers().get(0).running());
          } finally {
            stopAll(stop, threads);
          }
        } finally {
            stopAll(stop, threads);
            for (int fd : new int[] {vt[0], vt[1], bt[0], bt[1], kick, call}) {
                Fds.closeQuietly(fd);
            }
        }
    }

    /**
     * Ten front-ends connect, exchange a frame and disconnect one after another while a bystander on
     * the same worker moves frames both ways: each joins the worker at its first ring start and
     * leaves at its session's end; the bystander keeps moving frames through all of it.
     */
    @Test
    void devicesJoinAndLeaveWhileAnotherRuns() throws Exception {
        int[] bt = SeqPacketPair.open();
        int[] ct = SeqPacketPair.open();
        for (int fd : new int[] {bt[0], bt[1], ct[0], ct[1]}) {
            Fds.setNonBlocking(fd, true);
        }
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> threads = new ArrayList<>();
        try (WorkerPool pool = oneWorker("churn");
             PoolDevice bystander = new PoolDevice("steady", pool, bt[0]);
             PoolDevice.Guest other = new PoolDevice.Guest(bystander, 256);
             PoolDevice churn = new PoolDevice("churn", pool, ct[0])) {
          try {
            AtomicLong byRx = new AtomicLong();
            AtomicLong byTx = new AtomicLong();
            threads.add(flood(bt[1], stop));
            threads.add(guestLoop(other, stop, byRx, null));
            threads.add(drain(bt[1], stop, byTx));
            Worker w = pool.workers().get(0);
            for (int i = 0; i < 10; i++) {
                long rx0 = byRx.get();
                try (PoolDevice.Guest g = new PoolDevice.Guest(churn, 64)) {
                    assertEquals(2, w.queuePairs(), "joined at ring start");
                    exchange(ct[1], g, "session " + i);
                    g.client.close();
                    awaitSessionEnd(churn);
                }
                assertEquals(1, w.queuePairs(), "left at the session's end");
                assertEquals(1, pool.loads()[0]);
                awaitAtLeast(byRx::get, rx0 + 20, "bystander RX during session " + i);
            }
            assertEquals(0, bystander.pair.counters().totalDrops());
            assertEquals(List.of("steady q0"), w.stats().queuePairs());
            System.out.println("bystander while 10 devices came and went: rx " + byRx.get() + " tx " + byTx.get());
          } finally {
            stopAll(stop, threads);
          }
        } finally {
            stopAll(stop, threads);
            for (int fd : new int[] {bt[0], bt[1], ct[0], ct[1]}) {
                Fds.closeQuietly(fd);
            }
        }
    }

    /**
     * A device that stays idle beside a busy one is parked (the worker stops polling it) and wakes up
     * by itself when traffic comes: a frame from the host (tap readable) and one from the guest (its
     * kick) both get through, several times over.
     */
    @Test
    void aParkedDeviceWakesOnItsTapAndOnItsKick() throws Exception {
        int[] bt = SeqPacketPair.open();
        int[] qt = SeqPacketPair.open();
        for (int fd : new int[] {bt[0], bt[1], qt[0], qt[1]}) {
            Fds.setNonBlocking(fd, true);
        }
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> threads = new ArrayList<>();
        try (WorkerPool pool = oneWorker("park");
             PoolDevice busy = new PoolDevice("busy", pool, bt[0]);
             PoolDevice.Guest bg = new PoolDevice.Guest(busy, 256);
             PoolDevice quiet = new PoolDevice("quiet", pool, qt[0]);
             PoolDevice.Guest qg = new PoolDevice.Guest(quiet, 64)) {
          try {
            AtomicLong byRx = new AtomicLong();
            threads.add(flood(bt[1], stop));
            threads.add(guestLoop(bg, stop, byRx, null));
            threads.add(drain(bt[1], stop, new AtomicLong()));
            Worker w = pool.workers().get(0);
            for (int i = 0; i < 5; i++) {
                long parks = w.stats().get(WorkerLoad.PARKS);
                awaitAtLeast(() -> w.stats().get(WorkerLoad.PARKS), parks + 1, "the quiet device parked (" + i + ")");
                Thread.sleep(20);
                exchange(qt[1], qg, "parked device, round " + i);
            }
            assertEquals(0, quiet.pair.counters().totalDrops());
            System.out.println("worker with a busy and a quiet device: " + w.stats().get(WorkerLoad.PARKS) + " parks");
          } finally {
            stopAll(stop, threads);
          }
        } finally {
            stopAll(stop, threads);
            for (int fd : new int[] {bt[0], bt[1], qt[0], qt[1]}) {
                Fds.closeQuietly(fd);
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    static void stopAll(AtomicBoolean stop, List<Thread> threads) throws InterruptedException {
        stop.set(true);
        for (Thread t : threads) {
            t.join(WAIT_MS);
        }
    }

    /** Host → device: writes frames into the "tap" as fast as it takes them. */
    static Thread flood(int host, AtomicBoolean stop) {
        return Thread.ofPlatform().name("host-flood").start(() -> {
            byte[] f = frame(300, 0x11);
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = a.allocate(f.length);
                MemorySegment.copy(f, 0, s, ValueLayout.JAVA_BYTE, 0, f.length);
                while (!stop.get()) {
                    if (Fds.write(host, s, f.length) == Fds.WOULD_BLOCK) {
                        Poll.poll(host, Poll.POLLOUT, 10);
                    }
                }
            }
        });
    }

    /** Device → host: reads and counts what the device wrote to its "tap". */
    static Thread drain(int host, AtomicBoolean stop, AtomicLong count) {
        return Thread.ofPlatform().name("host-drain").start(() -> {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = a.allocate(70_000);
                while (!stop.get()) {
                    if (Poll.poll(host, Poll.POLLIN, 10) != 0 && Fds.read(host, s, s.byteSize()) > 0) {
                        count.incrementAndGet();
                    }
                }
            }
        });
    }

    /** The guest receives (counting) and sends one frame per round until stopped or it faults. */
    static Thread guestLoop(PoolDevice.Guest g, AtomicBoolean stop, AtomicLong rx, List<Throwable> faults) {
        return Thread.ofPlatform().name("guest").start(() -> {
            byte[] out = Arrays.copyOfRange(frame(200, 0x22), HDR, HDR + 200);
            try {
                while (!stop.get()) {
                    if (g.nic.receive(0, 10) != null) {
                        rx.incrementAndGet();
                    }
                    g.nic.send(0, out, 10);
                }
            } catch (Throwable t) {
                if (faults == null) {
                    throw t;
                }
                synchronized (faults) {
                    faults.add(t);
                }
            }
        });
    }

    static void awaitAtLeast(LongSupplier v, long n, String what) throws InterruptedException {
        long t0 = System.nanoTime();
        while (v.getAsLong() < n && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
            Thread.sleep(1);
        }
        assertTrue(v.getAsLong() >= n, what + ": " + v.getAsLong() + " < " + n);
    }

    static VirtqError awaitBroken(QueuePairProxy p, int role) throws InterruptedException {
        long t0 = System.nanoTime();
        VirtqError r;
        while ((r = p.brokenReason(role)) == null && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
            Thread.sleep(1);
        }
        assertNotNull(r, "queue not marked broken");
        return r;
    }

    static void awaitSessionEnd(PoolDevice d) throws InterruptedException {
        long t0 = System.nanoTime();
        while (d.server.sessionActive() && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
            Thread.sleep(2);
        }
        assertTrue(!d.server.sessionActive(), d.name + ": session did not end");
    }

    /** One frame each way through a device whose host side is {@code host}, checked byte for byte. */
    static void exchange(int host, PoolDevice.Guest g, String when) throws InterruptedException {
        byte[] down = frame(300, 0x33);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(70_000);
            MemorySegment.copy(down, 0, s, ValueLayout.JAVA_BYTE, 0, down.length);
            assertEquals(down.length, Fds.write(host, s, down.length), when);
            byte[] want = Arrays.copyOfRange(down, HDR, down.length);
            var r = g.nic.receive(0, WAIT_MS);
            assertNotNull(r, when + ": guest received nothing");
            assertArrayEquals(want, r.frame(), when);
            byte[] up = Arrays.copyOfRange(frame(400, 0x44), HDR, HDR + 400);
            assertTrue(g.nic.send(0, up, WAIT_MS), when + ": no TX buffer");
            assertTrue(Poll.poll(host, Poll.POLLIN, WAIT_MS) != 0, when + ": host received nothing");
            assertEquals(HDR + up.length, Fds.read(host, s, s.byteSize()), when);
        }
    }

    /** Header (zero) plus an Ethernet frame of {@code len} bytes filled with {@code fill}. */
    static byte[] frame(int len, int fill) {
        byte[] f = new byte[HDR + len];
        Arrays.fill(f, HDR, f.length, (byte) fill);
        for (int i = 0; i < 6; i++) {
            f[HDR + i] = (byte) 0xff;
        }
        return f;
    }
}
