package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.Vring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The single-buffer read path of {@link RxEngine} (one {@code read} per frame, or batched
 * {@code IORING_OP_READ}s): chains that are one buffer larger than any frame the guest can be
 * handed. The tap (here an AF_UNIX SOCK_SEQPACKET pair, which cuts records the same way) returns
 * at most the buffer's length, so a read that fills the buffer may have been cut: such a frame
 * is dropped and counted, its buffer stays for the next frame, and the frames around it arrive
 * intact and in order. A frame longer than the negotiated maximum but shorter than the buffer is
 * delivered, as the readv path delivers it.
 */
class RxEngineSingleBufferTest {
    static final int MTU = 1500;
    static final int RING = 64;
    static final int BUF = 2048;

    DriverMemory dm;
    int[] sock;
    IoUring ring;
    Arena arena = Arena.ofConfined();

    @AfterEach
    void tearDown() {
        if (ring != null) {
            ring.close();
        }
        if (sock != null) {
            Fds.closeQuietly(sock[0]);
            Fds.closeQuietly(sock[1]);
        }
        if (dm != null) {
            dm.close();
        }
        arena.close();
    }

    @ParameterizedTest(name = "io_uring={0}")
    @ValueSource(booleans = {false, true})
    void cutFramesAreDroppedAndTheRestArriveInOrder(boolean uring) {
        dm = DriverMemory.allocate(8 << 20, DriverMemory.DEFAULT_GPA_BASE);
        sock = SeqPacketPair.open();
        Fds.setNonBlocking(sock[0], true);
        Fds.setNonBlocking(sock[1], true);
        DriverVirtqueue dq = new DriverVirtqueue(dm, RING, 0, 0, 0);
        Vring vring = new Vring("rx-single");
        SplitVirtqueue q = (SplitVirtqueue) vring.queue();
        q.setSize(RING);
        q.setFeatures(0);
        q.setMemory(dm.guestMemory(1));
        assertTrue(q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()),
                dm.userAddress(dq.usedGpa())));
        q.setBase(0);
        q.start();
        QueueCounters counters = new QueueCounters();
        RxEngine engine = new RxEngine(0, vring, arena, counters, new QueueLatency(), RING);
        engine.configure(sock[0], VirtioNetHdr.SIZE, true, false, MTU);
        if (uring) {
            Assumptions.assumeTrue(IoUring.unavailableReason() == null, () -> "io_uring: " + IoUring.unavailableReason());
            ring = IoUring.create(RxEngine.RING_BATCH);
            engine.useRing(ring);
        }
        long[] bufOfHead = new long[RING];
        for (int i = 0; i < RING; i++) {
            long g = dm.alloc(BUF, 64);
            int head = dq.add(new long[] {g}, new int[] {BUF}, 0, 1, false);
            bufOfHead[head] = g;
        }
        dq.publish();

        // Lengths include the 12-byte header. Largest legal frame: 1500 + 14 + 4 + 12 = 1530.
        int[] lens = {64, 1530, BUF + 500, 100, BUF, 1600, BUF - 1, 60000, 200};
        boolean[] kept = {true, true, false, true, false, true, true, false, true};
        MemorySegment send = arena.allocate(65536, 64);
        List<byte[]> expected = new ArrayList<>();
        for (int i = 0; i < lens.length; i++) {
            byte[] f = new byte[lens[i]];
            for (int k = 0; k < f.length; k++) {
                f[k] = (byte) (i * 31 + k);
            }
            MemorySegment.copy(f, 0, send, ValueLayout.JAVA_BYTE, 0, f.length);
            assertEquals(f.length, Fds.write(sock[1], send, f.length));
            if (kept[i]) {
                f[10] = 1; // num_buffers
                f[11] = 0;
                expected.add(f);
            }
        }
        int rounds = 0;
        while (engine.process(64, System.nanoTime()) > 0 && rounds++ < 10) {
            // all frames are queued: a few rounds take them all
        }
        List<byte[]> got = new ArrayList<>();
        long u;
        while ((u = dq.pollUsed()) != -1) {
            int head = (int) (u >>> 32);
            int len = (int) u;
            byte[] b = new byte[len];
            MemorySegment.copy(dm.at(bufOfHead[head], len), ValueLayout.JAVA_BYTE, 0, b, 0, len);
            got.add(b);
        }
        assertEquals(expected.size(), got.size(), "frames delivered");
        for (int i = 0; i < expected.size(); i++) {
            assertArrayEquals(expected.get(i), got.get(i), "frame " + i);
        }
        assertEquals(3, counters.drops(DropReason.RX_TOO_BIG), "cut frames counted");
        assertEquals(expected.size(), counters.get(Counter.RX_FRAMES));
        assertEquals(Fds.WOULD_BLOCK, Fds.read(sock[0], send, send.byteSize()), "socket drained");
        engine.releaseWindow();
    }
}
