package io.jvhost.driver.net;

import io.jvhost.virtio.VirtioFeatures;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.vhostuser.DeviceBackend;
import io.jvhost.vhostuser.StartedRing;
import io.jvhost.virtq.RingSetup;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.SplitVirtqueue;
import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link GuestNic#prefillTx} / {@link GuestNic#sendPrefilled} and {@link GuestNic#drainRx}: the device (a {@link SplitVirtqueue}
 * on the NIC's TX ring, in this thread) sees exactly the header fields passed and the prefilled
 * frame, also after {@link GuestNic#send} reused a buffer in between, and the contract's misuses
 * are refused; drainRx counts frames (not mergeable buffers) and re-posts every buffer.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class GuestNicPrefillTest {
    private static final int RING = 8;
    private static final int MAX_FRAME = 2000;

    private DriverMemory mem;
    private GuestNic nic;
    private SplitVirtqueue txq;
    private Map<Integer, StartedRing> rings;
    private final Chain chain = new Chain(Arena.ofAuto(), 8);

    private void open(long features) {
        mem = DriverMemory.allocate(GuestNic.ramNeeded(1, RING, MAX_FRAME, features), DriverMemory.DEFAULT_GPA_BASE);
        nic = new GuestNic(mem, 1, features, RING, MAX_FRAME);
        RingsOnly dev = new RingsOnly();
        GuestMemory table = mem.guestMemory(1);
        nic.attach(dev, table);
        rings = dev.rings;
        StartedRing rc = dev.rings.get(1);
        txq = new SplitVirtqueue("tx-under-test");
        txq.setSize(rc.size());
        txq.setFeatures(rc.features());
        assertTrue(txq.setMemory(table));
        assertTrue(txq.setAddresses(rc.descAddr(), rc.availAddr(), rc.usedAddr()));
        txq.setBase(rc.baseIndex());
        txq.start();
    }

    @AfterEach
    void close() {
        if (nic != null) {
            nic.close();
        }
        if (mem != null) {
            mem.close();
        }
    }

    private static byte[] frame(int len, int seed) {
        byte[] f = new byte[len];
        for (int i = 0; i < len; i++) {
            f[i] = (byte) (i * 31 + seed);
        }
        return f;
    }

    /** The next TX chain's readable bytes (header + frame), then completes it. */
    private byte[] takeAndComplete() {
        assertEquals(SplitVirtqueue.CHAIN, txq.next(chain), "a TX chain is pending");
        assertEquals(0, chain.writableCount(), "TX chains are read-only");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        MemorySegment ram = mem.ram();
        for (int i = 0; i < chain.readableCount(); i++) {
            // In-process table: iovec bases are host addresses inside the driver's RAM segment.
            long off = chain.readableBase(i) - ram.address();
            out.writeBytes(ram.asSlice(off, chain.readableLen(i)).toArray(ValueLayout.JAVA_BYTE));
        }
        txq.addUsed(chain.head(), 0);
        txq.publishUsed();
        return out.toByteArray();
    }

    private static byte[] tail(byte[] b, int from) {
        return java.util.Arrays.copyOfRange(b, from, b.length);
    }

    @ParameterizedTest(name = "separateHeader={0}")
    @ValueSource(booleans = {false, true})
    void prefilledFrameGoesOutWithOnlyTheHeaderWritten(boolean separateHeader) {
        open(VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF));
        nic.setTxSeparateHeader(0, separateHeader);
        byte[] f = frame(1514, 7);
        byte[] padded = new byte[f.length + 10];
        System.arraycopy(f, 0, padded, 5, f.length);
        nic.prefillTx(0, padded, 5, f.length);
        // More frames than TX buffers: every buffer is used at least twice, returned in between.
        for (int i = 0; i < 3 * RING; i++) {
            assertTrue(nic.sendPrefilled(0, f.length, VirtioNetHdr.FLAG_NEEDS_CSUM, VirtioNetHdr.GSO_TCPV4, 54, 1448 + i,
                    34, 16, 1000));
            byte[] got = takeAndComplete();
            assertEquals(12 + f.length, got.length);
            MemorySegment h = MemorySegment.ofArray(got);
            assertEquals(VirtioNetHdr.FLAG_NEEDS_CSUM, VirtioNetHdr.flags(h, 0));
            assertEquals(VirtioNetHdr.GSO_TCPV4, VirtioNetHdr.gsoType(h, 0));
            assertEquals(54, VirtioNetHdr.hdrLen(h, 0));
            assertEquals(1448 + i, VirtioNetHdr.gsoSize(h, 0));
            assertEquals(34, VirtioNetHdr.csumStart(h, 0));
            assertEquals(16, VirtioNetHdr.csumOffset(h, 0));
            assertEquals(0, VirtioNetHdr.numBuffers(h, 0));
            assertArrayEquals(f, tail(got, 12), "frame " + i);
        }
        // A shorter len sends the prefilled frame's prefix, with a plain header.
        assertTrue(nic.sendPrefilled(0, 60, 0, VirtioNetHdr.GSO_NONE, 0, 0, 0, 0, 1000));
        byte[] got = takeAndComplete();
        assertArrayEquals(new byte[12], java.util.Arrays.copyOf(got, 12), "stale header fields were left");
        assertArrayEquals(java.util.Arrays.copyOf(f, 60), tail(got, 12));
        assertNull(txq.brokenReason());
    }

    @Test
    void bufferOverwrittenBySendIsRestoredBeforeItIsPostedPrefilled() {
        open(0); // legacy 10-byte header, no VERSION_1
        byte[] pre = frame(200, 1);
        byte[] other = frame(300, 99);
        nic.prefillTx(0, pre, 0, pre.length);
        // The free list is a stack: a buffer returned is the next one taken, so each prefilled send
        // below reuses the buffer the plain send just overwrote.
        for (int i = 0; i < RING + 2; i++) {
            assertTrue(nic.send(0, other, 1000));
            assertArrayEquals(other, tail(takeAndComplete(), 10));
            assertTrue(nic.sendPrefilled(0, pre.length, 0, 0, 0, 0, 0, 0, 1000));
            byte[] got = takeAndComplete();
            assertEquals(10 + pre.length, got.length);
            assertArrayEquals(pre, tail(got, 10), "round " + i);
        }
    }

    @Test
    void misuseIsRefused() {
        open(VirtioFeatures.bit(VirtioFeatures.F_VERSION_1));
        assertThrows(IllegalStateException.class, () -> nic.sendPrefilled(0, 10, 0, 0, 0, 0, 0, 0, 10));
        assertThrows(IllegalArgumentException.class, () -> nic.prefillTx(0, new byte[MAX_FRAME + 1], 0, MAX_FRAME + 1));
        assertThrows(IndexOutOfBoundsException.class, () -> nic.prefillTx(0, new byte[10], 5, 10));
        nic.prefillTx(0, frame(100, 3), 0, 100);
        assertThrows(IllegalArgumentException.class, () -> nic.sendPrefilled(0, 101, 0, 0, 0, 0, 0, 0, 10));
        assertTrue(nic.sendPrefilled(0, 100, 0, 0, 0, 0, 0, 0, 10));
        // One buffer in flight: refilling now could change a frame the device is reading.
        assertThrows(IllegalStateException.class, () -> nic.prefillTx(0, frame(100, 4), 0, 100));
        takeAndComplete();
        nic.prefillTx(0, frame(100, 4), 0, 100);
        assertTrue(nic.sendPrefilled(0, 100, 0, 0, 0, 0, 0, 0, 10));
        assertArrayEquals(frame(100, 4), tail(takeAndComplete(), 12));
        // Ring full and nothing returned: times out with false (send keeps two descriptors spare,
        // so RING - 1 frames fit).
        for (int i = 0; i < RING - 1; i++) {
            assertTrue(nic.sendPrefilled(0, 100, 0, 0, 0, 0, 0, 0, 10));
        }
        assertFalse(nic.sendPrefilled(0, 100, 0, 0, 0, 0, 0, 0, 10));
    }

    @Test
    void drainRxCountsFramesNotBuffersAndRepostsThem() {
        open(VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF));
        StartedRing rc = rings.get(0);
        SplitVirtqueue rxq = new SplitVirtqueue("rx-under-test");
        rxq.setSize(rc.size());
        rxq.setFeatures(rc.features());
        assertTrue(rxq.setMemory(mem.guestMemory(1)));
        assertTrue(rxq.setAddresses(rc.descAddr(), rc.availAddr(), rc.usedAddr()));
        rxq.setBase(rc.baseIndex());
        rxq.start();
        assertEquals(RING, nic.rxPosted(0));
        assertEquals(0, nic.drainRx(0, 0), "nothing returned yet");
        assertEquals(0, nic.drainRx(0, 20), "times out with 0");
        // Frame A in one buffer, frame B spanning two (num_buffers 2), frame C in one.
        deliver(rxq, 1, 60);
        deliver(rxq, 2, 60);
        deliver(rxq, 0, 60);
        deliver(rxq, 1, 60);
        rxq.publishUsed();
        assertEquals(3, nic.drainRx(0, 1000));
        assertEquals(RING, nic.rxPosted(0), "every buffer re-posted");
        // A frame whose second buffer comes back only later: counted once, its continuation skipped.
        deliver(rxq, 2, 60);
        rxq.publishUsed();
        assertEquals(1, nic.drainRx(0, 1000));
        deliver(rxq, 0, 60);
        deliver(rxq, 1, 70);
        rxq.publishUsed();
        assertEquals(1, nic.drainRx(0, 1000), "continuation not counted as a frame");
        assertEquals(RING, nic.rxPosted(0));
        // receive() after drainRx sees whole frames again.
        deliver(rxq, 1, 70);
        rxq.publishUsed();
        GuestNic.Received r = nic.receive(0, 1000);
        assertEquals(70 - 12, r.frame().length);
        assertNull(rxq.brokenReason());
    }

    @Test
    void awaitTxInFlightAsksForOneCallWhenEnoughAreBack() {
        open(VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX));
        nic.prefillTx(0, frame(100, 5), 0, 100);
        for (int i = 0; i < 5; i++) {
            assertTrue(nic.sendPrefilled(0, 100, 0, 0, 0, 0, 0, 0, 10));
        }
        takeAndComplete();
        txq.needsCall(); // the device's first decision always calls; later ones follow used_event
        assertTrue(nic.awaitTxInFlightAtMost(0, 5, 10), "already at most 5 in flight");
        // 4 in flight, at most 1 wanted: the call is asked for after 3 more completions, not the next one.
        assertFalse(nic.awaitTxInFlightAtMost(0, 1, 20));
        takeAndComplete();
        assertFalse(txq.needsCall(), "no call after the first of 3");
        takeAndComplete();
        assertFalse(txq.needsCall(), "no call after the second of 3");
        takeAndComplete();
        assertTrue(txq.needsCall(), "a call once 3 are back");
        assertTrue(nic.awaitTxInFlightAtMost(0, 1, 1000));
        assertEquals(1, nic.txInFlight(0));
    }

    /** Device side: fills the next RX buffer with a header carrying {@code numBuffers} and {@code len} bytes in all. */
    private void deliver(SplitVirtqueue rxq, int numBuffers, int len) {
        assertEquals(SplitVirtqueue.CHAIN, rxq.next(chain), "an RX buffer is posted");
        long off = chain.writableBase(0) - mem.ram().address();
        MemorySegment ram = mem.ram();
        ram.asSlice(off, len).fill((byte) 0x5a);
        if (numBuffers > 0) {
            ram.asSlice(off, 12).fill((byte) 0);
            VirtioNetHdr.numBuffers(ram, off, numBuffers);
        }
        rxq.addUsed(chain.head(), len);
    }

    /** Records the rings GuestNic.attach starts; nothing else. */
    private static final class RingsOnly implements DeviceBackend {
        final Map<Integer, StartedRing> rings = new HashMap<>();

        @Override
        public long features() {
            return -1L;
        }

        @Override
        public int maxQueuePairs() {
            return 1;
        }

        @Override
        public void onFeaturesSet(long features) {
        }

        GuestMemory table;

        @Override
        public void onMemoryTable(GuestMemory memory) {
            table = memory;
        }

        @Override
        public void startRing(int queueIndex, RingSetup setup) {
        StartedRing ring = new StartedRing(queueIndex, setup, table);
            rings.put(ring.queueIndex(), ring);
        }

        @Override
        public int stopRing(int queueIndex) {
            return 0;
        }

        @Override
        public void setRingEnabled(int queueIndex, boolean enabled) {
        }

        @Override
        public void setCallFd(int queueIndex, int callFd) {
        }

        @Override
        public void setErrFd(int queueIndex, int errFd) {
        }

        @Override
        public boolean sendRarp(byte[] mac) {
            return false;
        }

        @Override
        public boolean setMtu(int mtu) {
            return false;
        }

        @Override
        public VirtioNetConfig config() {
            return null;
        }

        @Override
        public boolean setMac(byte[] mac) {
            return false;
        }

        @Override
        public void reset() {
        }

        @Override
        public void close() {
        }
    }
}
