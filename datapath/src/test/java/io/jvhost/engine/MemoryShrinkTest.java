package io.jvhost.engine;

import io.jvhost.stats.Counter;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import io.jvhost.nativ.Poll;
import io.jvhost.net.SeqPacketPair;
import io.jvhost.vhostuser.DeviceBackend;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.virtq.RingSetup;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.vhostuser.VhostUserServer;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtq.VirtqError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A hostile front-end shrinks ({@code ftruncate}) the memfd it passed with SET_MEM_TABLE while
 * traffic flows. Our accesses to the vanished pages fault — SIGBUS in a Java access (the JVM
 * raises an InternalError), EFAULT from readv/writev — and must stop only that device's queue pair
 * with {@link VirtqError#MEMORY_FAULT} (logged, counted); the JVM, a second device and a new
 * session on the same device keep working.
 *
 * <p>No root: the device's "tap" is one end of an AF_UNIX SOCK_SEQPACKET pair (one record per
 * frame, like a tap); the test plays the host side on the other end and the guest with
 * {@link GuestNic} over a real vhost-user socket.
 *
 * <p>Two shrinks: to 24 KiB (the rings of a 256-entry queue pair survive, every buffer is gone:
 * the device faults on frame data — readv EFAULT on RX, the Java header read on TX) and to 0 (the
 * rings are gone too: the device faults reading the avail ring).
 */
class MemoryShrinkTest {
    static final int RING = 256;
    static final int HDR = 12;
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
    static final int WAIT_MS = 10_000;

    /** A device whose tap is a socket: one {@link QueuePairProxy}, forwarded to as NetDevice does. */
    static final class SocketDevice implements DeviceBackend {
        final int[] sock = SeqPacketPair.open();
        final QueuePairProxy worker;
        final String path = "/tmp/jvhost-shrink-" + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".sock";
        final VhostUserServer server;
        volatile long features;

        SocketDevice(String name) {
            Fds.setNonBlocking(sock[0], true);
            Fds.setNonBlocking(sock[1], true);
            worker = QueuePairProxy.withOwnWorker(name, 0, sock[0], WorkerConfig.defaults(), 32768);
            worker.start();
            server = VhostUserServer.listen(name, path, this, FeatureSet.all());
        }

        /** The host side: what the device writes to its "tap" arrives here, what we write it reads. */
        int host() {
            return sock[1];
        }

        @Override
        public long features() {
            long f = 0;
            for (int b : new int[] {VirtioFeatures.NET_F_MAC, VirtioFeatures.NET_F_MRG_RXBUF, VirtioFeatures.NET_F_STATUS,
                    VirtioFeatures.RING_F_INDIRECT_DESC, VirtioFeatures.RING_F_EVENT_IDX,
                    VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES, VirtioFeatures.F_VERSION_1}) {
                f |= 1L << b;
            }
            return f;
        }

        @Override
        public int maxQueuePairs() {
            return 1;
        }

        @Override
        public void onFeaturesSet(long f) {
            features = f;
            worker.setFeatures(f, 1500);
        }

        @Override
        public void onMemoryTable(GuestMemory memory) {
            worker.setMemory(memory);
        }

        @Override
        public void startRing(int q, RingSetup ring) {
            worker.startRing(q & 1, ring);
        }

        @Override
        public int stopRing(int q) {
            return worker.stopRing(q & 1);
        }

        @Override
        public void setRingEnabled(int q, boolean on) {
            worker.setRingEnabled(q & 1, on);
        }

        @Override
        public void setCallFd(int q, int fd) {
            worker.setCallFd(q & 1, fd);
        }

        @Override
        public void setErrFd(int q, int fd) {
            worker.setErrFd(q & 1, fd);
        }

        @Override
        public boolean sendRarp(byte[] mac) {
            return false;
        }

        @Override
        public boolean setMtu(int mtu) {
            return true;
        }

        @Override
        public VirtioNetConfig config() {
            return new VirtioNetConfig(new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56}, VirtioNetConfig.STATUS_LINK_UP, 1, 1500);
        }

        @Override
        public boolean setMac(byte[] mac) {
            return true;
        }

        @Override
        public void reset() {
            worker.reset();
        }

        @Override
        public void close() {
            server.close();
            worker.close();
            Fds.closeQuietly(sock[0]);
            Fds.closeQuietly(sock[1]);
        }
    }

    /** The Java guest of one session: memfd RAM, NIC, vhost-user client. */
    static final class Guest implements AutoCloseable {
        final DriverMemory mem;
        final GuestNic nic;
        final VhostUserClient client;

        Guest(SocketDevice dev) {
            long ram = GuestNic.ramNeeded(1, RING, 1514, FEATURES);
            mem = DriverMemory.memfd("shrink-guest", ram, DriverMemory.DEFAULT_GPA_BASE);
            nic = new GuestNic(mem, 1, FEATURES, RING, 1514);
            client = VhostUserClient.connect(dev.path);
            nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
        }

        @Override
        public void close() {
            client.close();
            nic.close();
            mem.close();
        }
    }

    @ParameterizedTest(name = "shrink to {0} bytes")
    @ValueSource(longs = {24 * 1024, 0})
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void shrinkStopsOnlyThatQueuePair(long keep) throws Exception {
        try (SocketDevice victim = new SocketDevice("shrink-a");
             SocketDevice bystander = new SocketDevice("shrink-b")) {
            Guest first = new Guest(victim);
            Guest g = first;
            Guest other = new Guest(bystander);
            try {
                exchange(victim, g, "before");
                exchange(bystander, other, "bystander before");

                // Traffic flows both ways while the front-end shrinks the file: the host floods RX,
                // the guest thread receives and sends (until its own accesses fault: it maps the
                // same file; that fault is the test's, caught in that thread).
                AtomicBoolean stop = new AtomicBoolean();
                AtomicLong guestFrames = new AtomicLong();
                List<Throwable> guestFaults = new ArrayList<>();
                Thread flood = Thread.ofPlatform().name("host-flood").start(() -> {
                    byte[] f = frame(600, 0x11);
                    try (Arena a = Arena.ofConfined()) {
                        MemorySegment s = a.allocate(f.length);
                        MemorySegment.copy(f, 0, s, ValueLayout.JAVA_BYTE, 0, f.length);
                        while (!stop.get()) {
                            if (Fds.write(victim.host(), s, f.length) == Fds.WOULD_BLOCK) {
                                Thread.onSpinWait();
                            }
                        }
                    }
                });
                Thread guest = Thread.ofPlatform().name("guest").start(() -> {
                    try {
                        byte[] out = Arrays.copyOfRange(frame(200, 0x22), HDR, HDR + 200);
                        while (!stop.get()) {
                            if (first.nic.receive(0, 10) != null) {
                                guestFrames.incrementAndGet();
                            }
                            first.nic.send(0, out, 10);
                        }
                    } catch (Throwable t) {
                        synchronized (guestFaults) {
                            guestFaults.add(t);
                        }
                    }
                });
                long t0 = System.nanoTime();
                while (guestFrames.get() < 50 && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
                    Thread.sleep(1);
                }
                assertTrue(guestFrames.get() >= 50, "traffic did not flow before the shrink");

                Mman.ftruncate(g.mem.fd(), keep);

                // The guest thread dies on its own first access to the vanished pages. If, at that
                // moment, the device held no RX buffer (the guest was behind) and had no TX frame,
                // the device sleeps on the kick eventfds and never touches guest memory again, so
                // nothing can fault. A front-end then nudges it: the returned RX buffers are posted
                // again unread (ring writes only) and both rings are kicked.
                long ts = System.nanoTime();
                while (victim.worker.brokenReason(QueuePair.RX) == null && guest.isAlive()
                        && System.nanoTime() - ts < WAIT_MS * 1_000_000L) {
                    Thread.sleep(1);
                }
                boolean nudged = false;
                if (victim.worker.brokenReason(QueuePair.RX) == null && !guest.isAlive()) {
                    nudged = true;
                    try {
                        first.nic.recycleRxAndKick(0);
                    } catch (Throwable expected) {
                        // shrunk to 0: reading the used ring faults here too (the kicks went out)
                    }
                }
                VirtqError rx = awaitBroken(victim.worker, QueuePair.RX);
                stop.set(true);
                flood.join(WAIT_MS);
                guest.join(WAIT_MS);
                assertEquals(VirtqError.MEMORY_FAULT, rx, () -> "rx: " + victim.worker.brokenMessage(QueuePair.RX));
                // The worker marks RX, then TX (each logged): wait for the second too.
                assertEquals(VirtqError.MEMORY_FAULT, awaitBroken(victim.worker, QueuePair.TX));
                assertTrue(victim.worker.brokenMessage(QueuePair.RX).contains("shrank"),
                        victim.worker.brokenMessage(QueuePair.RX));
                assertTrue(victim.worker.counters().get(Counter.MEMORY_FAULTS) >= 1, "MEMORY_FAULTS counted");
                System.out.println("shrink to " + keep + ": " + victim.worker.brokenMessage(QueuePair.RX)
                        + "; guest thread: " + guestFaults + (nudged ? "; device nudged after the guest thread faulted" : ""));

                // The worker thread survived: it still answers commands; the other device still works.
                victim.worker.sync();
                exchange(bystander, other, "bystander after");
                assertNull(bystander.worker.brokenReason(QueuePair.RX));
                assertEquals(0, bystander.worker.counters().get(Counter.MEMORY_FAULTS));

                // The front-end goes away (its GET_VRING_BASE / reset must not fault again) ...
                g.close();
                g = null;
                long t1 = System.nanoTime();
                while (victim.server.sessionActive() && System.nanoTime() - t1 < WAIT_MS * 1_000_000L) {
                    Thread.sleep(5);
                }
                assertTrue(!victim.server.sessionActive(), "session did not end");
                assertTrue(victim.server.running(), "control thread of the victim device died");
                // ... and a new session on the same device works both ways.
                g = new Guest(victim);
                exchange(victim, g, "new session");
                assertNull(victim.worker.brokenReason(QueuePair.RX));
                assertNull(victim.worker.brokenReason(QueuePair.TX));
            } finally {
                if (g != null) {
                    closeQuietly(g);
                }
                closeQuietly(other);
            }
        }
    }

    /**
     * The memory shrinks while the rings are idle; the front-end then stops and restarts a ring, so
     * the first access to the vanished pages is the device's start (reading used.idx) inside a
     * control command: GET_VRING_BASE still answers (nothing to publish), the restart faults, the
     * session ends with a clear log line, and the device serves the next session.
     */
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void faultInsideAControlCommandEndsOnlyTheSession() throws Exception {
        try (SocketDevice dev = new SocketDevice("shrink-c")) {
            DriverMemory m = DriverMemory.memfd("shrink-idle", 1 << 20, DriverMemory.DEFAULT_GPA_BASE);
            int kick = EventFd.create(0, true);
            int call = EventFd.create(0, true);
            VhostUserClient c = VhostUserClient.connect(dev.path);
            try {
                c.negotiate(FEATURES, VhostUserMessage.PROTOCOL_SUPPORTED);
                c.setMemTable(List.of(m.region()));
                DriverVirtqueue tx = new DriverVirtqueue(m, RING, FEATURES, 0, 0);
                c.setupRing(1, tx, kick, call);
                c.setVringEnable(1, true);
                Mman.ftruncate(m.fd(), 0);
                assertEquals(0, c.getVringBase(1), "GET_VRING_BASE of an idle ring on shrunk memory");
                try {
                    c.setupRing(1, tx, kick, call); // the start reads used.idx: gone
                } catch (RuntimeException expected) {
                    // the session may end before the last message is acknowledged
                }
                assertTrue(c.awaitClosed(WAIT_MS), "the session was not ended");
                assertTrue(dev.worker.counters().get(Counter.MEMORY_FAULTS) >= 1, "MEMORY_FAULTS counted");
                assertTrue(dev.server.running(), "control thread died");
            } finally {
                closeQuietly(c);
                Fds.closeQuietly(kick);
                Fds.closeQuietly(call);
                m.close();
            }
            long t0 = System.nanoTime();
            while (dev.server.sessionActive() && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
                Thread.sleep(5);
            }
            Guest g = new Guest(dev);
            try {
                exchange(dev, g, "after the faulted session");
            } finally {
                g.close();
            }
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        try {
            c.close();
        } catch (Exception ignored) {
            // cleanup after a failure: the failure is what matters
        }
    }

    static VirtqError awaitBroken(QueuePairProxy w, int role) throws InterruptedException {
        long t0 = System.nanoTime();
        VirtqError r;
        while ((r = w.brokenReason(role)) == null && System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
            Thread.sleep(1);
        }
        assertNotNull(r, "queue not marked broken after the shrink");
        return r;
    }

    /** One frame each way, checked byte for byte. */
    static void exchange(SocketDevice dev, Guest g, String when) {
        byte[] down = frame(300, 0x33);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(70_000);
            // Drain what a flood may have left on the host side first.
            while (Fds.read(dev.host(), s, s.byteSize()) > 0) {
                // discard
            }
            // host -> guest
            MemorySegment.copy(down, 0, s, ValueLayout.JAVA_BYTE, 0, down.length);
            // A flood may still fill the device's side of the socket (its RX was stopped): the new
            // session's RX drains it into the guest's buffers, so retry until there is room.
            long w;
            long tw = System.nanoTime();
            while ((w = Fds.write(dev.host(), s, down.length)) == Fds.WOULD_BLOCK
                    && System.nanoTime() - tw < WAIT_MS * 1_000_000L) {
                try {
                    Thread.sleep(1);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            }
            assertEquals(down.length, w, when);
            // Frames a flood left queued for the device may arrive first: skip them.
            byte[] want = Arrays.copyOfRange(down, HDR, down.length);
            GuestNic.Received r = null;
            long t0 = System.nanoTime();
            while (System.nanoTime() - t0 < WAIT_MS * 1_000_000L) {
                r = g.nic.receive(0, 100);
                if (r != null && Arrays.equals(r.frame(), want)) {
                    break;
                }
            }
            assertNotNull(r, when + ": guest received nothing");
            assertArrayEquals(want, r.frame(), when + ": guest did not receive the frame");
            // guest -> host
            byte[] up = Arrays.copyOfRange(frame(400, 0x44), HDR, HDR + 400);
            assertTrue(g.nic.send(0, up, WAIT_MS), when + ": no TX buffer");
            assertTrue(Poll.poll(dev.host(), Poll.POLLIN, WAIT_MS) != 0, when + ": host received nothing");
            long n = Fds.read(dev.host(), s, s.byteSize());
            assertEquals(HDR + up.length, n, when);
            byte[] got = new byte[(int) n - HDR];
            MemorySegment.copy(s, ValueLayout.JAVA_BYTE, HDR, got, 0, got.length);
            assertArrayEquals(up, got, when + ": host got another frame");
        }
    }

    /** Header (zero) plus an Ethernet frame of {@code len} bytes filled with {@code fill}. */
    static byte[] frame(int len, int fill) {
        byte[] f = new byte[HDR + len];
        Arrays.fill(f, HDR, f.length, (byte) fill);
        for (int i = 0; i < 6; i++) {
            f[HDR + i] = (byte) 0xff; // broadcast destination
        }
        return f;
    }
}
