package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.Vring;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@link RxEngine} against a driver that posts RX chains of many different sizes and shapes, fed
 * frames of many lengths through an AF_UNIX SOCK_SEQPACKET pair (record boundaries kept, like a
 * tap: one readv returns one frame, so no root is needed).
 *
 * <p>Regression for 3c358b6: with unequal buffer sizes, {@code windowBytes} was decreased by the
 * capacity of the chains that moved into the delivered chains' slots instead of the delivered ones,
 * so it drifted from the real window; a frame was then taken as fitting while part of it went to
 * the overflow area (delivered cut short / stale chain slots handed to the guest), and later a
 * negative window index faulted the worker.
 *
 * <p>Modes: mergeable buffers with and without guest GSO (frames up to 64 KiB spread over many
 * chains, and GSO frames held while the ring is starved until the guest posts more), and the
 * non-mergeable big (one ~64 KiB chain per frame, 12-byte header) and small (one ~1.5 KiB chain per
 * frame, legacy 10-byte header) buffers. Every frame must arrive byte-exact, in order, with the
 * {@code num_buffers} the guest needs to reassemble it, every buffer but a frame's last one full,
 * and no drop counted. Randomised, with a fixed list of seeds so a failure reproduces.
 */
class RxEngineMixedBuffersTest {

    enum Mode {
        MERGEABLE_GSO(true, true, VirtioNetHdr.SIZE),
        MERGEABLE(true, false, VirtioNetHdr.SIZE),
        BIG(false, true, VirtioNetHdr.SIZE),
        SMALL(false, false, VirtioNetHdr.LEGACY_SIZE);

        final boolean mergeable;
        final boolean gso;
        final int hdr;

        Mode(boolean mergeable, boolean gso, int hdr) {
            this.mergeable = mergeable;
            this.gso = gso;
            this.hdr = hdr;
        }

        int maxFrame() {
            return gso ? VirtioNetHdr.MAX_GSO_FRAME : MTU + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN;
        }
    }

    static final int MTU = 1500;
    static final long[] SEEDS = {1, 7, 42, 1234, 0xC0FFEE, 20261122};
    /** Descriptors per indirect table (also the most in a direct chain of the big mode). */
    static final int MAX_INDIRECT = 20;

    static Stream<Arguments> params() {
        List<Arguments> out = new ArrayList<>();
        for (Mode m : Mode.values()) {
            int[] rings = m.mergeable ? new int[] {256, 1024} : new int[] {256};
            for (int ring : rings) {
                for (long seed : SEEDS) {
                    out.add(Arguments.of(m, ring, seed, false));
                    out.add(Arguments.of(m, ring, seed, true));
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} ring={1} seed={2} io_uring={3}")
    @MethodSource("params")
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void everyFrameArrivesIntact(Mode mode, int ringSize, long seed, boolean uring) throws Exception {
        Run r = new Run(mode, ringSize, seed);
        r.uring = uring;
        r.run();
        if (uring && mode == Mode.MERGEABLE) {
            assertTrue(r.engine.batchedReads() > 0, "no batched io_uring read happened");
        }
    }

    /** One randomised exchange; the driver side plays the guest, single-threaded. */
    static final class Run {
        final Mode mode;
        final int ringSize;
        final Random rnd;
        final int frames;
        /** Smallest chain: a full ring of the most fragmented chains still holds a 64 KiB frame. */
        final int minChain;
        final int maxChain;
        final long features = 1L << VirtioFeatures.RING_F_INDIRECT_DESC;
        /** Batched single-buffer reads through an io_uring (RxEngine.useRing). */
        boolean uring;
        IoUring ring;

        DriverMemory dm;
        DriverVirtqueue dq;
        SplitVirtqueue q;
        RxEngine engine;
        final QueueCounters counters = new QueueCounters();
        int[] sock;
        MemorySegment sendBuf;
        long slotBase;
        int slotSize;
        /** Per head: the chain's buffers (gpa, len) and total capacity. */
        long[][] chainGpa;
        int[][] chainLen;
        int[] capacity;

        final ArrayDeque<byte[]> inFlight = new ArrayDeque<>();
        byte[] unsent;
        int sent;
        int posted;
        int received;
        long payloadBytes;
        int heldSeen;
        /** Frame being reassembled from used entries (mergeable). */
        byte[] cur;
        int curLen;
        int curBuffers;
        int curExpectBuffers;
        int prevLen;
        int prevCap;

        Run(Mode mode, int ringSize, long seed) {
            this.mode = mode;
            this.ringSize = ringSize;
            this.rnd = new Random(seed);
            this.frames = mode.gso ? 700 : 3000;
            if (mode.mergeable) {
                // ringSize / 3 chains of 3 descriptors fill the ring: they must hold the largest frame.
                this.minChain = Math.max(64, (VirtioNetHdr.MAX_GSO_BUFFER + 1000) / (ringSize / 3) + 1);
                this.maxChain = 16384 + 1;
            } else {
                this.minChain = mode.hdr + mode.maxFrame();
                this.maxChain = minChain + 4096;
            }
        }

        void run() throws Exception {
            slotSize = (maxChain + 4095) & ~4095;
            long ram = (long) slotSize * ringSize + (8L << 20);
            try (Arena arena = Arena.ofConfined()) {
                dm = DriverMemory.allocate(ram, DriverMemory.DEFAULT_GPA_BASE);
                sock = SeqPacketPair.open();
                try {
                    setUp(arena);
                    exchange();
                } finally {
                    if (ring != null) {
                        ring.close();
                    }
                    Fds.closeQuietly(sock[0]);
                    Fds.closeQuietly(sock[1]);
                    dm.close();
                }
            }
        }

        void setUp(Arena arena) {
            Fds.setNonBlocking(sock[0], true);
            Fds.setNonBlocking(sock[1], true);
            dq = new DriverVirtqueue(dm, ringSize, features, MAX_INDIRECT, 0);
            slotBase = dm.alloc((long) slotSize * ringSize, 4096);
            Vring vring = new Vring("rx-mixed");
            q = (SplitVirtqueue) vring.queue();
            q.setSize(ringSize);
            q.setFeatures(features);
            q.setMemory(dm.guestMemory(1));
            assertTrue(q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()),
                    dm.userAddress(dq.usedGpa())));
            q.setBase(0);
            q.start();
            engine = new RxEngine(0, vring, arena, counters, new QueueLatency(), ringSize);
            engine.configure(sock[0], mode.hdr, mode.mergeable, mode.gso, MTU);
            if (uring) {
                Assumptions.assumeTrue(IoUring.unavailableReason() == null, () -> "io_uring: " + IoUring.unavailableReason());
                ring = IoUring.create(RxEngine.RING_BATCH);
                engine.useRing(ring);
            }
            sendBuf = arena.allocate(VirtioNetHdr.MAX_GSO_BUFFER, 64);
            chainGpa = new long[ringSize][];
            chainLen = new int[ringSize][];
            capacity = new int[ringSize];
        }

        void exchange() {
            boolean starve = false;
            int stalls = 0;
            int iterations = 0;
            while (received < frames) {
                if (++iterations > 2_000_000) {
                    fail("no end: " + state());
                }
                if (rnd.nextInt(16) == 0) {
                    starve = !starve;
                }
                post(starve ? rnd.nextInt(2) : rnd.nextInt(48));
                writeFrames(1 + rnd.nextInt(6));
                int r = engine.process(1 + rnd.nextInt(24), System.nanoTime());
                assertNull(q.brokenReason(), () -> "queue broken: " + q.brokenMessage());
                if (engine.holdingFrame()) {
                    heldSeen++;
                }
                int got = drain();
                if (r == 0 && got == 0) {
                    // No progress: the engine wants buffers (or the socket is empty). Post all we can,
                    // as a guest does when its RX ring runs low.
                    post(ringSize);
                    if (++stalls > 100) {
                        fail("no progress with the ring full: " + state());
                    }
                } else {
                    stalls = 0;
                }
            }
            assertEquals(frames, sent);
            assertTrue(inFlight.isEmpty(), "frames left over");
            assertEquals(Fds.WOULD_BLOCK, Fds.read(sock[0], sendBuf, sendBuf.byteSize()), "socket not drained");
            assertEquals(frames, counters.get(Counter.RX_FRAMES), "RX_FRAMES");
            assertEquals(payloadBytes, counters.get(Counter.RX_BYTES), "RX_BYTES");
            assertEquals(0, counters.totalDrops(), () -> "drops: " + drops());
            assertNull(q.brokenReason(), () -> "queue broken: " + q.brokenMessage());
            if (mode == Mode.MERGEABLE_GSO) {
                assertTrue(heldSeen > 0, "the held-GSO-frame path was never taken");
            }
            engine.releaseWindow();
        }

        /** Adds up to {@code n} chains of random size and shape (direct or indirect) and publishes them. */
        void post(int n) {
            int added = 0;
            for (int i = 0; i < n; i++) {
                int total = chainSize();
                int parts = parts(total);
                boolean indirect = rnd.nextInt(3) == 0;
                if (!indirect && dq.numFree() < parts || indirect && dq.numFree() < 1) {
                    break;
                }
                long[] gpas = new long[parts];
                int[] lens = new int[parts];
                split(total, lens);
                // Slots are taken round-robin: the engine completes chains in the order they were
                // posted and at most ringSize are in flight, so the slot ringSize posts back is free.
                long g = slotBase + (long) (posted++ % ringSize) * slotSize;
                for (int k = 0; k < parts; k++) {
                    gpas[k] = g;
                    g += lens[k];
                }
                int head = dq.add(gpas, lens, 0, parts, indirect);
                assertTrue(head >= 0);
                assertNull(chainGpa[head], "head reused while in flight");
                chainGpa[head] = gpas;
                chainLen[head] = lens;
                capacity[head] = total;
                added++;
            }
            if (added > 0) {
                dq.publish();
            }
        }

        int chainSize() {
            if (!mode.mergeable) {
                return minChain + (rnd.nextBoolean() ? 0 : rnd.nextInt(maxChain - minChain + 1));
            }
            int[] menu = {1024, 1500, 1536, 2048, 3000, 4096, 4097, 8192, 9000, 16384};
            int s;
            switch (rnd.nextInt(3)) {
                case 0 -> s = menu[rnd.nextInt(menu.length)];
                case 1 -> s = minChain + rnd.nextInt(2048);
                default -> s = minChain + rnd.nextInt(maxChain - minChain);
            }
            return Math.max(minChain, Math.min(s, maxChain));
        }

        int parts(int total) {
            int most = mode.mergeable ? 3 : (mode.gso ? 18 : 2);
            return 1 + rnd.nextInt(Math.min(most, total));
        }

        /** Splits {@code total} into {@code lens.length} non-empty pieces; sometimes the first is just the header. */
        void split(int total, int[] lens) {
            int parts = lens.length;
            if (parts == 1) {
                lens[0] = total;
                return;
            }
            int left = total;
            for (int k = 0; k < parts - 1; k++) {
                int room = left - (parts - 1 - k);
                int len = (k == 0 && rnd.nextBoolean() && mode.hdr <= room) ? mode.hdr : 1 + rnd.nextInt(room);
                lens[k] = len;
                left -= len;
            }
            lens[parts - 1] = left;
        }

        void writeFrames(int n) {
            for (int i = 0; i < n && sent < frames; i++) {
                byte[] f = unsent != null ? unsent : frame();
                MemorySegment.copy(f, 0, sendBuf, ValueLayout.JAVA_BYTE, 0, f.length);
                long w = Fds.write(sock[1], sendBuf, f.length);
                if (w == Fds.WOULD_BLOCK) {
                    unsent = f;
                    return;
                }
                assertEquals(f.length, w);
                unsent = null;
                inFlight.add(f);
                payloadBytes += f.length - mode.hdr;
                sent++;
            }
        }

        /** Header (random bytes: the engine must pass them through) plus a frame of a random length. */
        byte[] frame() {
            int max = mode.maxFrame();
            int len;
            int pick = rnd.nextInt(10);
            if (pick < 3) {
                len = 14 + rnd.nextInt(Math.min(max, 1518) - 14 + 1);
            } else if (pick < 5) {
                int[] edges = mode.gso
                        ? new int[] {14, 60, 64, 1514, 1518, 1519, 4096, 9000, 32768, 65535, max}
                        : new int[] {14, 60, 64, 1000, 1514, 1518};
                len = edges[rnd.nextInt(edges.length)];
            } else if (pick < 8 || !mode.gso) {
                len = mode.gso ? 1519 + rnd.nextInt(max - 1519 + 1) : 14 + rnd.nextInt(max - 14 + 1);
            } else {
                len = max - rnd.nextInt(600);
            }
            byte[] f = new byte[mode.hdr + len];
            rnd.nextBytes(f);
            return f;
        }

        /** Reclaims used chains and checks each completed frame. */
        int drain() {
            int n = 0;
            long u;
            while ((u = dq.pollUsed()) != -1) {
                n++;
                int head = (int) (u >>> 32);
                int len = (int) u;
                int cap = capacity[head];
                assertTrue(len > 0 && len <= cap, () -> "used len " + len + " of a " + cap + "-byte chain, " + state());
                if (cur == null) {
                    assertTrue(len >= mode.hdr, () -> "first buffer of a frame shorter than the header: " + len);
                    assertTrue(!inFlight.isEmpty(), () -> "a frame arrived that was never sent, " + state());
                    cur = new byte[inFlight.peek().length + maxChain];
                    curLen = 0;
                    curBuffers = 0;
                } else {
                    // Only a frame's last buffer may be partly filled.
                    assertEquals(prevCap, prevLen, () -> "a middle buffer not filled, " + state());
                }
                assertTrue(curLen + len <= cur.length, () -> "frame longer than sent, " + state());
                gather(head, len, cur, curLen);
                curLen += len;
                curBuffers++;
                if (curBuffers == 1) {
                    curExpectBuffers = mode.hdr == VirtioNetHdr.SIZE
                            ? Short.toUnsignedInt((short) ((cur[10] & 0xff) | (cur[11] & 0xff) << 8)) : 1;
                    assertTrue(curExpectBuffers >= 1, () -> "num_buffers 0, " + state());
                    if (!mode.mergeable) {
                        assertEquals(1, curExpectBuffers, "num_buffers without MRG_RXBUF");
                    }
                }
                prevLen = len;
                prevCap = cap;
                chainGpa[head] = null;
                if (curBuffers == curExpectBuffers) {
                    byte[] want = inFlight.poll().clone();
                    if (mode.hdr == VirtioNetHdr.SIZE) {
                        want[10] = (byte) curBuffers;
                        want[11] = (byte) (curBuffers >>> 8);
                    }
                    byte[] got = Arrays.copyOf(cur, curLen);
                    int idx = received;
                    assertEquals(want.length, got.length, () -> "length of frame " + idx + ", " + state());
                    assertArrayEquals(want, got, () -> "content of frame " + idx + " (" + want.length + " bytes)");
                    received++;
                    cur = null;
                }
            }
            return n;
        }

        void gather(int head, int len, byte[] dst, int off) {
            long[] gpas = chainGpa[head];
            int[] lens = chainLen[head];
            assertTrue(gpas != null, () -> "head " + head + " returned twice");
            int left = len;
            for (int k = 0; k < gpas.length && left > 0; k++) {
                int c = Math.min(left, lens[k]);
                MemorySegment.copy(dm.at(gpas[k], c), ValueLayout.JAVA_BYTE, 0, dst, off, c);
                off += c;
                left -= c;
            }
        }

        String drops() {
            StringBuilder sb = new StringBuilder();
            for (DropReason r : DropReason.values()) {
                if (counters.drops(r) != 0) {
                    sb.append(r).append('=').append(counters.drops(r)).append(' ');
                }
            }
            return sb.toString();
        }

        String state() {
            return "mode " + mode + ", sent " + sent + ", received " + received + ", in flight " + inFlight.size()
                    + ", ring free " + dq.numFree() + ", drops " + drops() + ", rx frames "
                    + counters.get(Counter.RX_FRAMES);
        }
    }
}
