package io.jvhost.driver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.PackedDesc;
import io.jvhost.virtq.PackedEvent;
import io.jvhost.virtq.RingLayout;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The driver's packed ring against {@link PackedDevice}, a device written from the spec: wrap
 * counters over many laps, odd sizes (1, 3, 257) next to powers of two, chains, out-of-order use,
 * IN_ORDER batches reported by one used descriptor, indirect tables, the release order of heads,
 * event suppression in both directions and the ring base.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class PackedDriverQueueTest {
    private static final long EVENT_IDX = VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);
    private static final long IN_ORDER = VirtioFeatures.bit(VirtioFeatures.F_IN_ORDER);
    private static final long PACKED = VirtioFeatures.bit(VirtioFeatures.F_RING_PACKED);
    private static final long INDIRECT = VirtioFeatures.bit(VirtioFeatures.RING_F_INDIRECT_DESC);

    private final DriverMemory mem = DriverMemory.allocate(4 << 20, DriverMemory.DEFAULT_GPA_BASE);

    @AfterEach
    void close() {
        mem.close();
    }

    static Stream<Arguments> sizesAndOrder() {
        List<Arguments> a = new ArrayList<>();
        for (int size : new int[] {1, 3, 4, 257, 256}) {
            for (boolean inOrder : new boolean[] {false, true}) {
                for (int start : new int[] {0, size - 1}) {
                    a.add(Arguments.of(size, inOrder, start));
                }
            }
        }
        return a.stream();
    }

    private static long[] addrs(int n, long base) {
        long[] a = new long[n];
        for (int i = 0; i < n; i++) {
            a[i] = base + 0x1000L * i;
        }
        return a;
    }

    private static int[] lens(int n, int base) {
        int[] l = new int[n];
        for (int i = 0; i < n; i++) {
            l[i] = base + i;
        }
        return l;
    }

    @Test
    void createPicksTheFormatAndLaysOutPackedAreas() {
        DriverQueue split = DriverQueue.create(mem, 8, EVENT_IDX, 0);
        DriverQueue packed = DriverQueue.create(mem, 7, PACKED | EVENT_IDX, 0);
        assertEquals(RingLayout.SPLIT, split.layout());
        assertEquals(RingLayout.PACKED, packed.layout());
        assertTrue(split instanceof DriverVirtqueue);
        assertTrue(packed instanceof PackedDriverQueue);
        assertEquals(null, RingLayout.PACKED.checkAlignment(packed.descGpa(), packed.driverGpa(), packed.deviceGpa()));
        assertEquals(0, packed.descGpa() % 4096, "the ring starts a page");
        // The three areas do not overlap.
        assertTrue(packed.driverGpa() >= packed.descGpa() + 7L * PackedDesc.SIZE);
        assertTrue(packed.deviceGpa() >= packed.driverGpa() + PackedEvent.SIZE);
        // A fresh ring starts at slot 0 with the wrap counter 1: base 0x8000.
        assertEquals(1 << 15, packed.base());
        assertEquals(0, split.base());
        assertThrows(IllegalArgumentException.class, () -> DriverQueue.create(mem, 0, PACKED, 0));
        assertThrows(IllegalArgumentException.class, () -> DriverQueue.create(mem, 32769, PACKED, 0));
    }

    /**
     * Many laps of chains of 1 to 3 descriptors (never more than the ring), the device using each
     * in order: the device finds every chain complete with the driver's wrap counter, the driver
     * gets every token back with its length, and the wrap counters and base follow the laps.
     */
    @ParameterizedTest
    @MethodSource("sizesAndOrder")
    void wrapsOverManyLapsWithChains(int size, boolean inOrder, int start) {
        PackedDriverQueue q = new PackedDriverQueue(mem, size, EVENT_IDX | (inOrder ? IN_ORDER : 0), 0, start, true);
        PackedDevice dev = new PackedDevice(q, start, true);
        Random rnd = new Random(size * 31L + start);
        long slotsDone = 0;
        for (int round = 0; round < 6 * size + 20; round++) {
            int n = 1 + rnd.nextInt(Math.min(3, size));
            int readable = rnd.nextInt(n + 1);
            long base = 0x10_0000L * (round + 1);
            int token = q.add(addrs(n, base), lens(n, 100 + round), readable, n - readable, false);
            assertTrue(token >= 0 && token < size, "token " + token);
            assertNull(dev.take(), "nothing visible before publish");
            q.publish();
            PackedDevice.Buffer b = dev.take();
            assertNotNull(b, "round " + round);
            assertEquals(token, b.id());
            assertEquals(n, b.slots());
            for (int k = 0; k < n; k++) {
                long[] d = b.descs().get(k);
                assertEquals(base + 0x1000L * k, d[0]);
                assertEquals(100 + round + k, d[1]);
                int f = (int) d[2];
                assertEquals(k >= readable, (f & PackedDesc.F_WRITE) != 0, "WRITE of descriptor " + k);
                assertEquals(k + 1 < n, (f & PackedDesc.F_NEXT) != 0, "NEXT of descriptor " + k);
            }
            assertEquals(-1, q.pollUsed());
            dev.use(b, 7 + round);
            long u = q.pollUsed();
            assertEquals(token, (int) (u >>> 32));
            assertEquals(7 + round, (int) u);
            assertEquals(-1, q.pollUsed());
            assertEquals(size, q.numFree());
            slotsDone += n;
            boolean wrap = ((start + slotsDone) / size) % 2 == 0;
            assertEquals(wrap, q.availWrapCounter(), "driver wrap counter after " + slotsDone + " slots");
            assertEquals(wrap, q.usedWrapCounter());
            assertEquals(PackedEvent.offWrap((int) ((start + slotsDone) % size), wrap), q.base());
        }
    }

    /** Several buffers in flight, the device filling the ring and using them in a shuffled order. */
    @ParameterizedTest
    @ValueSource(ints = {1, 3, 4, 257})
    void outOfOrderUseReturnsEachIdOnceAndRecyclesIds(int size) {
        PackedDriverQueue q = new PackedDriverQueue(mem, size, EVENT_IDX, 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        Random rnd = new Random(size);
        Set<Integer> inFlight = new HashSet<>();
        for (int round = 0; round < 40; round++) {
            int added = 0;
            while (true) {
                int t = q.add(addrs(1, 0x1000), lens(1, 64), 0, 1, false);
                if (t < 0) {
                    break;
                }
                assertTrue(inFlight.add(t), "id " + t + " given twice while in flight");
                added++;
            }
            assertEquals(0, q.numFree());
            q.publish();
            List<PackedDevice.Buffer> got = new ArrayList<>();
            PackedDevice.Buffer b;
            while ((b = dev.take()) != null) {
                got.add(b);
            }
            assertEquals(added, got.size());
            Collections.shuffle(got, rnd);
            // Use some, reclaim, use the rest: the driver frees exactly the ids reported.
            int half = got.size() / 2;
            for (int i = 0; i < got.size(); i++) {
                dev.use(got.get(i), i);
                if (i == half) {
                    drainAndCheck(q, inFlight, got.subList(0, half + 1));
                }
            }
            drainAndCheck(q, inFlight, got.subList(half + 1, got.size()));
            assertTrue(inFlight.isEmpty());
            assertEquals(size, q.numFree());
        }
    }

    private static void drainAndCheck(PackedDriverQueue q, Set<Integer> inFlight, List<PackedDevice.Buffer> expected) {
        for (PackedDevice.Buffer e : expected) {
            long u = q.pollUsed();
            assertTrue(u >= 0, "used buffer " + e.id() + " not seen");
            assertEquals(e.id(), (int) (u >>> 32));
            assertTrue(inFlight.remove(e.id()));
        }
        assertEquals(-1, q.pollUsed());
    }

    /**
     * IN_ORDER: the device reports a batch of chains of different lengths with one used descriptor
     * naming the last buffer, written where the batch starts, then skips the batch's slots. The
     * driver returns every buffer of the batch in order (earlier ones with length 0), frees all
     * slots, and finds the next batch — also across the ring's end, on odd sizes.
     */
    @ParameterizedTest
    @ValueSource(ints = {3, 5, 8, 257})
    void inOrderBatchIsCompletedByOneUsedDescriptor(int size) {
        PackedDriverQueue q = new PackedDriverQueue(mem, size, EVENT_IDX | IN_ORDER, 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        Random rnd = new Random(size * 7L);
        for (int round = 0; round < 4 * size; round++) {
            ArrayDeque<PackedDevice.Buffer> batch = new ArrayDeque<>();
            List<Integer> tokens = new ArrayList<>();
            int slots = 0;
            while (true) {
                int n = 1 + rnd.nextInt(Math.min(2, size));
                if (q.numFree() < n || (!tokens.isEmpty() && rnd.nextInt(4) == 0)) {
                    break;
                }
                int t = q.add(addrs(n, 0x2000), lens(n, 60), n, 0, false);
                assertTrue(t >= 0);
                tokens.add(t);
                slots += n;
            }
            q.publish();
            PackedDevice.Buffer b;
            while ((b = dev.take()) != null) {
                batch.add(b);
            }
            assertEquals(tokens.size(), batch.size());
            // In order, ids are given in order: each is its head's slot.
            int expectSlot = batch.getFirst().id();
            for (PackedDevice.Buffer x : batch) {
                assertEquals(expectSlot, x.id());
                expectSlot = (expectSlot + x.slots()) % size;
            }
            dev.useBatch(batch.getLast().id(), 0, slots);
            for (int i = 0; i < tokens.size(); i++) {
                long u = q.pollUsed();
                assertEquals((long) tokens.get(i), u >>> 32, "buffer " + i + " of the batch");
                assertEquals(0, (int) u);
            }
            assertEquals(-1, q.pollUsed());
            assertEquals(size, q.numFree());
        }
    }

    /** IN_ORDER with a batch length: the last buffer carries the reported length; pending counts the batch. */
    @Test
    void inOrderBatchReportsTheLastLengthAndCountsAsPending() {
        PackedDriverQueue q = new PackedDriverQueue(mem, 16, EVENT_IDX | IN_ORDER, 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        int[] t = new int[4];
        for (int i = 0; i < 4; i++) {
            t[i] = q.add(addrs(1, 0x3000), lens(1, 60), 1, 0, false);
        }
        q.publish();
        for (int i = 0; i < 4; i++) {
            assertNotNull(dev.take());
        }
        dev.useBatch(t[3], 1234, 4);
        assertEquals(4, q.usedPending(16));
        assertTrue(q.enableCallbacksAfter(4));
        assertEquals(t[0], (int) (q.pollUsed() >>> 32));
        assertEquals(3, q.usedPending(16));
        assertTrue(q.enableCallbacks(), "the rest of a batch counts as used");
        assertEquals(0, (int) q.pollUsed());
        assertEquals(0, (int) q.pollUsed());
        long last = q.pollUsed();
        assertEquals(t[3], (int) (last >>> 32));
        assertEquals(1234, (int) last);
        assertFalse(q.enableCallbacks());
        assertEquals(3, q.inOrderImplied(), "three buffers had no used descriptor of their own");
    }

    /** A used descriptor naming a buffer that is not in flight breaks the queue (exception), in both modes. */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void usedIdNotInFlightIsRejected(boolean inOrder) {
        PackedDriverQueue q = new PackedDriverQueue(mem, 8, inOrder ? IN_ORDER : 0, 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        int t = q.add(addrs(1, 0x1000), lens(1, 60), 1, 0, false);
        q.publish();
        assertNotNull(dev.take());
        dev.useBatch(t + 3, 0, 1);
        assertThrows(IllegalStateException.class, q::pollUsed);
        PackedDriverQueue q2 = new PackedDriverQueue(mem, 8, inOrder ? IN_ORDER : 0, 0, 0, true);
        PackedDevice dev2 = new PackedDevice(q2, 0, true);
        q2.add(addrs(1, 0x1000), lens(1, 60), 1, 0, false);
        q2.publish();
        assertNotNull(dev2.take());
        dev2.useBatch(200, 0, 1);
        assertThrows(IllegalStateException.class, q2::pollUsed);
    }

    /**
     * A batch of chains becomes visible at publish, the first head last: with every later head
     * already available, the device still finds nothing until the first one is.
     */
    @Test
    void publishStoresTheFirstHeadLast() {
        PackedDriverQueue q = new PackedDriverQueue(mem, 8, 0, 0, 0, true);
        int a = q.add(addrs(2, 0x1000), lens(2, 60), 2, 0, false);
        int b = q.add(addrs(1, 0x5000), lens(1, 60), 1, 0, false);
        // Before publish: the non-head descriptor (slot 1) is written, the heads (0 and 2) are not.
        assertTrue(PackedDesc.isAvail(PackedDesc.flags(q.descRing(), PackedDesc.offset(1)), true));
        assertFalse(PackedDesc.isAvail(PackedDesc.flags(q.descRing(), PackedDesc.offset(0)), true));
        assertFalse(PackedDesc.isAvail(PackedDesc.flags(q.descRing(), PackedDesc.offset(2)), true));
        q.publish();
        PackedDevice dev = new PackedDevice(q, 0, true);
        assertEquals(a, dev.take().id());
        assertEquals(b, dev.take().id());
        assertNull(dev.take());
    }

    /** Indirect: one ring descriptor with INDIRECT and a table of 16-byte descriptors carrying WRITE. */
    @Test
    void indirectChainTakesOneSlot() {
        PackedDriverQueue q = new PackedDriverQueue(mem, 4, INDIRECT, 8, 0, true);
        assertTrue(q.indirectSupported());
        int t = q.add(addrs(5, 0x9000), lens(5, 10), 2, 3, true);
        q.publish();
        assertEquals(3, q.numFree());
        PackedDevice dev = new PackedDevice(q, 0, true);
        PackedDevice.Buffer b = dev.take();
        assertEquals(1, b.slots());
        long[] d = b.descs().get(0);
        assertTrue(((int) d[2] & PackedDesc.F_INDIRECT) != 0);
        assertEquals(5 * PackedDesc.SIZE, d[1]);
        var table = mem.at(d[0], d[1]);
        for (int k = 0; k < 5; k++) {
            long off = (long) k * PackedDesc.SIZE;
            assertEquals(0x9000 + 0x1000L * k, PackedDesc.addr(table, off));
            assertEquals(10 + k, PackedDesc.len(table, off));
            assertEquals(k >= 2, (PackedDesc.flags(table, off) & PackedDesc.F_WRITE) != 0);
        }
        dev.use(b, 99);
        assertEquals(((long) t << 32) | 99, q.pollUsed());
        assertEquals(4, q.numFree());
        PackedDriverQueue none = new PackedDriverQueue(mem, 4, 0, 8, 0, true);
        assertFalse(none.indirectSupported(), "INDIRECT_DESC not negotiated");
    }

    /**
     * Kicks: ENABLE always, DISABLE never, with EVENT_IDX DESC only when the batch made the event
     * slot available — including an event slot in the previous lap (wrap counter differs).
     */
    @Test
    void kickFollowsTheDeviceEventSuppression() {
        int size = 5;
        PackedDriverQueue q = new PackedDriverQueue(mem, size, EVENT_IDX, 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        addUseReclaim(q, dev, 2); // slots 0, 1
        assertTrue(q.kickNeeded(), "ENABLE");
        dev.setDeviceEvent(0, PackedEvent.FLAG_DISABLE);
        addUseReclaim(q, dev, 1);
        assertFalse(q.kickNeeded(), "DISABLE");
        // Next avail is slot 3, wrap 1. Ask for a kick when slot 4 (wrap 1) is made available.
        dev.setDeviceEvent(PackedEvent.offWrap(4, true), PackedEvent.FLAG_DESC);
        addUseReclaim(q, dev, 1); // slot 3
        assertFalse(q.kickNeeded(), "slot 3 is before the event slot");
        addUseReclaim(q, dev, 2); // slots 4 and 0 (wrap flips to 0)
        assertTrue(q.kickNeeded(), "slot 4 was made available");
        // The event slot 4 of the previous lap (wrap 1) while the driver is in lap 0: already passed.
        addUseReclaim(q, dev, 1); // slot 1, wrap 0
        assertFalse(q.kickNeeded(), "an event already passed does not ask again");
        // Slot 2 in the current lap (wrap 0).
        dev.setDeviceEvent(PackedEvent.offWrap(2, false), PackedEvent.FLAG_DESC);
        addUseReclaim(q, dev, 3); // slots 2, 3, 4
        assertTrue(q.kickNeeded());
        // Without EVENT_IDX, DESC counts as enabled (the driver did not negotiate it).
        PackedDriverQueue plain = new PackedDriverQueue(mem, size, 0, 0, 0, true);
        PackedDevice pd = new PackedDevice(plain, 0, true);
        pd.setDeviceEvent(PackedEvent.offWrap(3, true), PackedEvent.FLAG_DESC);
        addUseReclaim(plain, pd, 1);
        assertTrue(plain.kickNeeded());
    }

    private static void addUseReclaim(PackedDriverQueue q, PackedDevice dev, int buffers) {
        for (int i = 0; i < buffers; i++) {
            assertTrue(q.add(addrs(1, 0x1000), lens(1, 60), 1, 0, false) >= 0);
        }
        q.publish();
        for (int i = 0; i < buffers; i++) {
            dev.use(dev.take(), 0);
        }
        for (int i = 0; i < buffers; i++) {
            assertTrue(q.pollUsed() >= 0);
        }
    }

    /**
     * Calls: the driver's event area as a device reads it. enableCallbacks asks for the next used
     * slot (EVENT_IDX: DESC at last used | wrap), disableCallbacks says DISABLE, and
     * enableCallbacksAfter(n) asks for the slot n - 1 ahead so the device calls with the n-th buffer,
     * not before.
     */
    @ParameterizedTest
    @ValueSource(ints = {3, 8})
    void callsFollowTheDriverEventSuppression(int size) {
        PackedDriverQueue q = new PackedDriverQueue(mem, size, EVENT_IDX, 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        for (int lap = 0; lap < 3 * size; lap++) {
            int n = Math.min(size, 3);
            for (int i = 0; i < n; i++) {
                q.add(addrs(1, 0x1000), lens(1, 60), 0, 1, false);
            }
            q.publish();
            List<PackedDevice.Buffer> bs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                bs.add(dev.take());
            }
            q.disableCallbacks();
            dev.use(bs.get(0), 1);
            assertFalse(dev.callWanted(true), "DISABLE");
            assertEquals(bs.get(0).id(), (int) (q.pollUsed() >>> 32));
            assertFalse(q.enableCallbacksAfter(n - 1), "nothing pending yet");
            for (int i = 1; i < n; i++) {
                dev.use(bs.get(i), 1);
                assertEquals(i == n - 1, dev.callWanted(true), "call after buffer " + i + " of " + (n - 1));
            }
            for (int i = 1; i < n; i++) {
                assertTrue(q.pollUsed() >= 0);
            }
            q.add(addrs(1, 0x1000), lens(1, 60), 0, 1, false);
            q.publish();
            assertFalse(q.enableCallbacks());
            dev.use(dev.take(), 1);
            assertTrue(dev.callWanted(true), "enableCallbacks: the next used buffer calls");
            assertTrue(q.pollUsed() >= 0);
        }
        q.disableCallbacks();
        assertEquals(PackedEvent.FLAG_DISABLE, PackedEvent.flagsAcquire(q.driverArea()));
        PackedDriverQueue plain = new PackedDriverQueue(mem, size, 0, 0, 0, true);
        plain.enableCallbacks();
        assertEquals(PackedEvent.FLAG_ENABLE, PackedEvent.flagsAcquire(plain.driverArea()), "ENABLE without EVENT_IDX");
    }

    static Stream<Arguments> concurrent() {
        return Stream.of(Arguments.of(3, false), Arguments.of(3, true), Arguments.of(257, false), Arguments.of(257, true));
    }

    /**
     * The device on a thread of its own, as it is in life: 200,000 buffers of 1 or 2 descriptors,
     * published in batches of 1 to 4; the device checks every descriptor it reads (address and
     * length as the driver wrote them, so a head visible before its chain would show) and uses them
     * in order, with IN_ORDER in batches of up to 4 reported by one used descriptor. The driver gets
     * every buffer back exactly once, in order.
     */
    @ParameterizedTest
    @MethodSource("concurrent")
    void aDeviceOnAnotherThreadSeesWholeChainsAndReturnsEverything(int size, boolean inOrder) throws Exception {
        PackedDriverQueue q = new PackedDriverQueue(mem, size, EVENT_IDX | (inOrder ? IN_ORDER : 0), 0, 0, true);
        PackedDevice dev = new PackedDevice(q, 0, true);
        int total = 200_000;
        java.util.concurrent.atomic.AtomicReference<Throwable> failed = new java.util.concurrent.atomic.AtomicReference<>();
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        Thread device = Thread.ofPlatform().name("packed-device").start(() -> {
            try {
                Random rnd = new Random(1);
                long expect = 0;
                List<PackedDevice.Buffer> batch = new ArrayList<>();
                int batchSlots = 0;
                int want = 1;
                while (!stop.get()) {
                    PackedDevice.Buffer b = dev.take();
                    if (b != null) {
                        long[] d0 = b.descs().get(0);
                        long seq = (d0[0] - 0x1000_0000L) >>> 12;
                        if (seq != expect) {
                            throw new AssertionError("buffer " + seq + ", expected " + expect);
                        }
                        for (int k = 0; k < b.slots(); k++) {
                            long[] d = b.descs().get(k);
                            if (d[0] != 0x1000_0000L + (seq << 12) + k || d[1] != (seq & 0xfff) + k) {
                                throw new AssertionError("descriptor " + k + " of buffer " + seq + ": " + d[0] + "/" + d[1]);
                            }
                        }
                        expect++;
                        batch.add(b);
                        batchSlots += b.slots();
                    }
                    if (!batch.isEmpty() && (b == null || batch.size() >= want)) {
                        if (inOrder) {
                            dev.useBatch(batch.get(batch.size() - 1).id(), 0, batchSlots);
                        } else {
                            for (PackedDevice.Buffer x : batch) {
                                dev.use(x, 0);
                            }
                        }
                        batch.clear();
                        batchSlots = 0;
                        want = 1 + rnd.nextInt(4);
                    } else if (b == null) {
                        Thread.onSpinWait();
                    }
                }
            } catch (Throwable t) {
                failed.set(t);
            }
        });
        try {
            Random rnd = new Random(2);
            int[] seqOf = new int[size];
            long added = 0;
            long done = 0;
            long end = System.nanoTime() + 50_000_000_000L;
            while (done < total) {
                int burst = 1 + rnd.nextInt(4);
                for (int i = 0; i < burst && added < total; i++) {
                    int n = 1 + rnd.nextInt(Math.min(2, size));
                    long[] a = new long[n];
                    int[] l = new int[n];
                    for (int k = 0; k < n; k++) {
                        a[k] = 0x1000_0000L + (added << 12) + k;
                        l[k] = (int) (added & 0xfff) + k;
                    }
                    int t = q.add(a, l, n, 0, false);
                    if (t < 0) {
                        break;
                    }
                    seqOf[t] = (int) added;
                    added++;
                }
                q.publish();
                long u;
                while ((u = q.pollUsed()) >= 0) {
                    assertEquals(done, seqOf[(int) (u >>> 32)], "buffers come back in order");
                    done++;
                }
                if (failed.get() != null || System.nanoTime() > end) {
                    break;
                }
            }
            assertEquals(null, failed.get());
            assertEquals(total, done);
            assertEquals(size, q.numFree());
        } finally {
            stop.set(true);
            device.join();
        }
        if (inOrder) {
            assertTrue(q.inOrderImplied() > 0, "the device batched");
        }
    }

    /** A ring that starts in lap 0 (wrap counter 0): base without bit 15, chains found by a device in that lap. */
    @Test
    void startsWithWrapCounterZero() {
        PackedDriverQueue q = new PackedDriverQueue(mem, 3, 0, 0, 2, false);
        assertEquals(2, q.base());
        PackedDevice dev = new PackedDevice(q, 2, false);
        assertNull(dev.take(), "a fresh ring in lap 0 has no available slot");
        int t = q.add(addrs(2, 0x1000), lens(2, 60), 1, 1, false);
        q.publish();
        PackedDevice.Buffer b = dev.take();
        assertEquals(t, b.id());
        assertEquals(2, b.slots());
        dev.use(b, 5);
        assertEquals(((long) t << 32) | 5, q.pollUsed());
        assertEquals(PackedEvent.offWrap(1, true), q.base());
    }
}
