package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.memory.GuestMemory;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Driver and device in two threads exchange buffers through one split ring over every ring size,
 * with the 16-bit indices wrapping, indirect on/off and EVENT_IDX on/off. Each buffer carries its
 * sequence number both ways, so loss, duplication and reordering are detected; every wait fails
 * after a long timeout, so a lost wake-up is detected. Guest RAM is split into 4 regions and the
 * buffer area straddles a boundary, so some buffers become two iovecs. Total over the suite:
 * more than a million buffers.
 */
class SplitVirtqueueExchangeTest {

    static final int SLOT = 40;           // not a divisor of 4096: some slots straddle a region boundary
    static final int WRITE_OFF = 16;
    static final int MAX_INDIRECT = 4;
    static final long WAIT_MS = 20_000;
    static final ValueLayout.OfByte B = ValueLayout.JAVA_BYTE;

    static Stream<Arguments> params() {
        List<Arguments> out = new ArrayList<>();
        for (int size : new int[] {2, 8, 64, 256, 1024, 32768}) {
            for (int start : new int[] {0, 65500}) {
                for (boolean indirect : new boolean[] {false, true}) {
                    for (boolean eventIdx : new boolean[] {false, true}) {
                        out.add(Arguments.of(size, start, indirect, eventIdx));
                    }
                }
            }
        }
        return out.stream();
    }

    /** Descriptor shape of buffer {@code seq}: 0 = r+w, 1 = r+r+w, 2 = r only, 3 = w only. */
    static int shape(long seq, int size) {
        int s = (int) (seq % 4);
        return (s == 1 && size < 3) ? 0 : s;
    }

    @ParameterizedTest(name = "size={0} start={1} indirect={2} eventIdx={3}")
    @MethodSource("params")
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void exchange(int size, int start, boolean indirect, boolean eventIdx) throws Exception {
        final long total = Math.max(24_000, 3L * size);
        long features = (indirect ? 1L << VirtioFeatures.RING_F_INDIRECT_DESC : 0)
                | (eventIdx ? 1L << VirtioFeatures.RING_F_EVENT_IDX : 0);
        long ramSize = Math.max(1L << 20, (long) size * 512);
        try (DriverMemory dm = DriverMemory.allocate(ramSize, DriverMemory.DEFAULT_GPA_BASE)) {
            DriverVirtqueue dq = new DriverVirtqueue(dm, size, features, MAX_INDIRECT, start);
            long bufGpa = dm.gpaBase() + ramSize / 2 - (long) SLOT * size / 2 - 4;
            assertTrue(bufGpa >= dm.gpaBase() + (ramSize - dm.remaining()), "buffers overlap rings");
            GuestMemory gm = dm.guestMemory(4);
            SplitVirtqueue q = new SplitVirtqueue("exchange");
            q.setSize(size);
            q.setFeatures(features);
            q.setMemory(gm);
            assertTrue(q.setAddresses(dm.userAddress(dq.descGpa()), dm.userAddress(dq.availGpa()),
                    dm.userAddress(dq.usedGpa())));
            q.setBase(start);
            q.start();

            MemorySegment ram = dm.ram();
            Doorbell kick = new Doorbell();
            Doorbell call = new Doorbell();
            ExecutorService ex = Executors.newFixedThreadPool(2);
            try {
                Future<Long> device = ex.submit(() -> device(q, ram, kick, call, total));
                Future<Long> driver = ex.submit(() -> driver(dq, dm, bufGpa, size, kick, call, total, indirect));
                assertEquals(total, driver.get());
                assertEquals(total, device.get());
            } finally {
                ex.shutdownNow();
                assertTrue(ex.awaitTermination(10, TimeUnit.SECONDS));
            }
            assertEquals((start + total) & 0xffff, q.base());
            assertEquals(dq.availIdx(), q.stop());
            assertEquals(size, dq.numFree());
            assertEquals(null, q.brokenReason());
            assertTrue(kick.rings() > 0 && call.rings() > 0);
        }
    }

    /** The device worker: take, verify, complete in batches, notify when asked, sleep on the kick. */
    static long device(SplitVirtqueue q, MemorySegment ram, Doorbell kick, Doorbell call, long total) {
        Chain c = new Chain(java.lang.foreign.Arena.ofAuto(), 8);
        long seq = 0;
        q.disableNotification();
        while (seq < total) {
            int r;
            int batch = 0;
            while (batch < 64 && (r = q.next(c)) == SplitVirtqueue.CHAIN) {
                int s = shape(seq, q.size());
                long readable = (s == 3) ? 0 : 8;
                long writable = (s == 2) ? 0 : 8;
                assertEquals(readable, c.readableBytes(), "readable bytes of seq " + seq);
                assertEquals(writable, c.writableBytes(), "writable bytes of seq " + seq);
                if (readable > 0) {
                    long got = gather(ram, c);
                    if (got != seq) {
                        throw new AssertionError("device expected seq " + seq + " got " + got + " (loss/dup/reorder)");
                    }
                }
                if (writable > 0) {
                    scatter(ram, c, seq * 3 + 1);
                }
                q.addUsed(c.head(), (int) c.writableBytes());
                seq++;
                batch++;
            }
            q.publishUsed();
            if (q.needsCall()) {
                call.ring();
            }
            assertEquals(null, q.brokenReason(), q.brokenMessage());
            if (batch > 0 || seq >= total) {
                continue;
            }
            if (q.enableNotification()) {
                q.disableNotification();
                continue;
            }
            kick.await("kick (device at seq " + seq + ")", WAIT_MS);
            q.disableNotification();
        }
        return seq;
    }

    static long driver(DriverVirtqueue dq, DriverMemory dm, long bufGpa, int size, Doorbell kick, Doorbell call,
                       long total, boolean indirect) {
        MemorySegment ram = dm.ram();
        long[] addrs = new long[4];
        int[] lens = new int[4];
        int[] headOf = new int[size];
        long sent = 0;
        long done = 0;
        dq.disableCallbacks();
        while (done < total) {
            boolean progress = false;
            long u;
            while ((u = dq.pollUsed()) != -1) {
                int id = (int) (u >>> 32);
                int len = (int) u;
                int slot = (int) (done % size);
                if (id != headOf[slot]) {
                    throw new AssertionError("driver: used id " + id + " but seq " + done + " had head " + headOf[slot]);
                }
                int s = shape(done, size);
                assertEquals(s == 2 ? 0 : 8, len, "used len of seq " + done);
                if (s != 2) {
                    long off = bufGpa + (long) slot * SLOT + WRITE_OFF - dm.gpaBase();
                    long v = ram.get(ValueLayout.JAVA_LONG_UNALIGNED, off);
                    assertEquals(done * 3 + 1, v, "device's answer for seq " + done);
                }
                done++;
                progress = true;
            }
            int added = 0;
            while (sent < total && sent - done < size) {
                int slot = (int) (sent % size);
                long b = bufGpa + (long) slot * SLOT;
                long off = b - dm.gpaBase();
                int s = shape(sent, size);
                int nr;
                int nw;
                ram.set(ValueLayout.JAVA_LONG_UNALIGNED, off, sent);
                ram.set(ValueLayout.JAVA_LONG_UNALIGNED, off + WRITE_OFF, -1L);
                switch (s) {
                    case 0 -> { addrs[0] = b; lens[0] = 8; addrs[1] = b + WRITE_OFF; lens[1] = 8; nr = 1; nw = 1; }
                    case 1 -> { addrs[0] = b; lens[0] = 4; addrs[1] = b + 4; lens[1] = 4;
                                addrs[2] = b + WRITE_OFF; lens[2] = 8; nr = 2; nw = 1; }
                    case 2 -> { addrs[0] = b; lens[0] = 8; nr = 1; nw = 0; }
                    default -> { addrs[0] = b + WRITE_OFF; lens[0] = 8; nr = 0; nw = 1; }
                }
                boolean useIndirect = indirect && nr + nw > 1;
                int head = dq.add(addrs, lens, nr, nw, useIndirect);
                if (head < 0) {
                    break;
                }
                headOf[slot] = head;
                sent++;
                added++;
            }
            if (added > 0) {
                dq.publish();
                if (dq.kickNeeded()) {
                    kick.ring();
                }
                progress = true;
            }
            if (progress || done >= total) {
                continue;
            }
            if (dq.enableCallbacks()) {
                dq.disableCallbacks();
                continue;
            }
            call.await("call (driver at done " + done + " sent " + sent + ")", WAIT_MS);
            dq.disableCallbacks();
        }
        return done;
    }

    /** Reads 8 little-endian bytes from the chain's readable iovecs (checking each lies inside RAM). */
    static long gather(MemorySegment ram, Chain c) {
        long v = 0;
        int shift = 0;
        for (int i = 0; i < c.readableCount(); i++) {
            long off = inside(ram, c.readableBase(i), c.readableLen(i));
            for (long k = 0; k < c.readableLen(i) && shift < 64; k++, shift += 8) {
                v |= (ram.get(B, off + k) & 0xffL) << shift;
            }
        }
        return v;
    }

    static void scatter(MemorySegment ram, Chain c, long v) {
        int shift = 0;
        for (int i = 0; i < c.writableCount(); i++) {
            long off = inside(ram, c.writableBase(i), c.writableLen(i));
            for (long k = 0; k < c.writableLen(i) && shift < 64; k++, shift += 8) {
                ram.set(B, off + k, (byte) (v >>> shift));
            }
        }
    }

    static long inside(MemorySegment ram, long base, long len) {
        long off = base - ram.address();
        if (off < 0 || len < 0 || off + len > ram.byteSize()) {
            throw new AssertionError("iovec 0x" + Long.toHexString(base) + "+" + len + " outside guest RAM");
        }
        return off;
    }
}
