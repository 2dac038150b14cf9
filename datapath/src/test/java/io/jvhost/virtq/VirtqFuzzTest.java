package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Coverage-guided fuzzing (Jazzer) of the chain walker and the address translation. A normal test
 * run replays the committed inputs under
 * {@code src/test/resources/io/jvhost/virtq/VirtqFuzzTestInputs/<method>/}; with
 * {@code JAZZER_FUZZ=1} each method fuzzes for a bounded time and new findings land there.
 *
 * <p>Properties: never throws, every iovec lies inside a guest region, byte counts add up, and
 * translation agrees with a brute-force search.
 */
class VirtqFuzzTest {
    private static final Logger QUIET = Logger.getLogger(SplitVirtqueue.class.getName());
    private static final long RAM = 64 * 1024;
    /** Shared for all runs: allocating per input would dominate the fuzzing speed. */
    private static final DriverMemory MEM = DriverMemory.allocate(RAM, 0x10_0000L);
    private static final GuestMemory GUEST = MEM.guestMemory(4);
    private static final Chain CHAIN = new Chain(Arena.global(), 16);
    private static final long RINGS_GPA = MEM.alloc(32 * 1024, 4096);
    private static final long DATA_GPA = MEM.alloc(16 * 1024, 4096);

    /** Regions with gaps and unsorted input, at odd places (for the translation target). */
    private static final List<MemorySegment> GAP_SEGS = new ArrayList<>();
    private static final GuestMemory GAPPED;

    static {
        QUIET.setLevel(Level.OFF);
        List<MemoryRegion> rs = new ArrayList<>();
        long[] gpas = {0x7000, 0x0, 0x1000, 0x10000, 0xffff_ffff_ffff_e000L, 0x8000_0000_0000_0000L};
        long[] sizes = {0x1000, 0x800, 0x1000, 0x3000, 0x2000, 0x1000};
        for (int i = 0; i < gpas.length; i++) {
            rs.add(new MemoryRegion(gpas[i], sizes[i], 0x5000_0000L + 0x10_0000L * i, 0, -1));
            GAP_SEGS.add(Arena.global().allocate(sizes[i], 64));
        }
        GAPPED = GuestMemory.ofSegments(rs, GAP_SEGS);
    }

    @FuzzTest(maxDuration = "60s")
    void chainWalker(FuzzedDataProvider d) {
        int size = 1 << d.consumeInt(0, 6);
        long features = (d.consumeBoolean() ? 1L << VirtioFeatures.RING_F_INDIRECT_DESC : 0)
                | (d.consumeBoolean() ? 1L << VirtioFeatures.RING_F_EVENT_IDX : 0);
        int start = d.consumeInt(0, 65535);
        MemorySegment rings = MEM.at(RINGS_GPA, 32 * 1024);
        rings.fill((byte) 0);
        MemorySegment desc = rings.asSlice(0, VringDesc.tableSize(size));
        MemorySegment avail = rings.asSlice(8192, VringAvail.sizeOf(size));
        MemorySegment used = rings.asSlice(16384, VringUsed.sizeOf(size));
        long lo = MEM.gpaBase();
        for (int i = 0; i < size; i++) {
            long addr = switch (d.consumeInt(0, 3)) {
                case 0 -> d.consumeLong();
                case 1 -> DATA_GPA + d.consumeInt(0, 16 * 1024);
                default -> lo + d.consumeLong(0, RAM);
            };
            VringDesc.put(desc, (long) i * VringDesc.SIZE, addr, d.consumeInt(), d.consumeInt(0, 0xffff),
                    d.consumeInt(0, 0xffff));
        }
        int offers = d.consumeInt(0, size + 1);
        for (int k = 0; k < offers; k++) {
            VringAvail.setRing(avail, (start + k) & (size - 1), d.consumeInt(0, 0xffff));
        }
        int idx = d.consumeBoolean() ? d.consumeInt(0, 65535) : start + offers;
        avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) idx);
        used.set(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET, (short) start);
        // the rest of the input becomes the data page, where indirect tables may point
        MEM.at(DATA_GPA, 16 * 1024).fill((byte) 0);
        byte[] rest = d.consumeRemainingAsBytes();
        MemorySegment.copy(MemorySegment.ofArray(rest), 0, MEM.at(DATA_GPA, 16 * 1024), 0, Math.min(rest.length, 16 * 1024));

        SplitVirtqueue q = new SplitVirtqueue("fuzz");
        q.setSize(size);
        q.setFeatures(features);
        q.setMemory(GUEST);
        q.setRings(desc, avail, used);
        q.setBase(start);
        q.start();
        for (int k = 0; k <= size + 1; k++) {
            int r = q.next(CHAIN);
            if (r == SplitVirtqueue.BROKEN) {
                if (q.brokenReason() == null) {
                    throw new AssertionError("broken without a reason");
                }
                return;
            }
            if (r == SplitVirtqueue.NONE) {
                return;
            }
            checkInside(CHAIN);
            q.pushUsed(CHAIN.head(), 0);
            q.needsCall();
        }
        q.enableNotification();
    }

    @FuzzTest(maxDuration = "60s")
    void translate(FuzzedDataProvider d) {
        for (int n = 0; n < 16 && d.remainingBytes() > 0; n++) {
            long gpa = d.consumeBoolean() ? d.consumeLong() : d.pickValue(new long[] {0x7000, 0x0, 0x1000, 0x10000,
                    0xffff_ffff_ffff_e000L, 0x8000_0000_0000_0000L}) + d.consumeInt(-8, 0x4000);
            long len = d.consumeBoolean() ? d.consumeLong() : d.consumeInt(0, 0x5000);
            long got = GAPPED.gpaToHost(gpa, len);
            long expect = bruteForce(gpa, len);
            if (got != expect) {
                throw new AssertionError("gpa=0x" + Long.toHexString(gpa) + " len=0x" + Long.toHexString(len)
                        + " got 0x" + Long.toHexString(got) + " expected 0x" + Long.toHexString(expect));
            }
        }
    }

    private static long bruteForce(long gpa, long len) {
        for (int i = 0; i < GAPPED.regionCount(); i++) {
            MemoryRegion r = GAPPED.region(i);
            long off = gpa - r.guestPhysAddr();
            // off and len as unsigned offsets within the region
            if (Long.compareUnsigned(off, r.size()) < 0
                    && (len == 0 || Long.compareUnsigned(len, r.size() - off) <= 0)) {
                return GAPPED.regionHostAddr(i) + off;
            }
        }
        return GuestMemory.NO_ADDR;
    }

    private static void checkInside(Chain c) {
        long sum = 0;
        for (int i = 0; i < c.readableCount(); i++) {
            inside(c.readableBase(i), c.readableLen(i));
            sum += c.readableLen(i);
        }
        if (sum != c.readableBytes()) {
            throw new AssertionError("readable bytes");
        }
        sum = 0;
        for (int i = 0; i < c.writableCount(); i++) {
            inside(c.writableBase(i), c.writableLen(i));
            sum += c.writableLen(i);
        }
        if (sum != c.writableBytes()) {
            throw new AssertionError("writable bytes");
        }
    }

    private static void inside(long host, long len) {
        long base = MEM.ram().address();
        if (len <= 0 || host < base || host - base + len > RAM) {
            throw new AssertionError("iovec 0x" + Long.toHexString(host) + "+" + len + " outside guest memory");
        }
    }
}
