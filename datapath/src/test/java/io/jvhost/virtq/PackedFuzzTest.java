package io.jvhost.virtq;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtio.VirtioFeatures;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Coverage-guided fuzzing (Jazzer) of the packed-ring walker and its used-descriptor writer. The
 * input writes every descriptor of a ring of any size up to 64 (any addr/len/id/flags: chains
 * across the last slot, wrap counters flipped, ids out of range or repeated, indirect tables in
 * the data page), the driver's event area and the base, picks INDIRECT / EVENT_IDX / IN_ORDER, and
 * drives a sequence of the calls the engines make (take, complete in any order with any length
 * within the chain, publish, rewind the newest, call decisions, notification enable/disable,
 * returnInFlight, stop and restart at the returned base). A normal test run replays the committed
 * inputs under {@code src/test/resources/io/jvhost/virtq/PackedFuzzTestInputs/<method>/}.
 *
 * <p>Properties: nothing is thrown (a violation only breaks the queue, with a reason); every iovec
 * lies inside guest memory and the byte counts add up; the device writes nothing outside the
 * descriptor ring and its own event area, and in the ring never a descriptor's address; every
 * used descriptor it wrote names a buffer id it took and was given back; {@code inFlight()} is
 * the model's count.
 */
class PackedFuzzTest {
    private static final Logger QUIET = Logger.getLogger(PackedVirtqueue.class.getName());
    private static final long RAM = 64 * 1024;
    private static final DriverMemory MEM = DriverMemory.allocate(RAM, 0x10_0000L);
    private static final GuestMemory GUEST = MEM.guestMemory(4);
    private static final Chain CHAIN = new Chain(Arena.global(), 16);
    private static final long RING_GPA = MEM.alloc(4096, 4096);
    private static final long DATA_GPA = MEM.alloc(16 * 1024, 4096);
    private static final int DRIVER_OFF = 2048;
    private static final int DEVICE_OFF = 2048 + 64;
    private static final byte[] SNAP = new byte[(int) RAM];

    static {
        QUIET.setLevel(Level.OFF);
    }

    @FuzzTest(maxDuration = "60s")
    void packedWalker(FuzzedDataProvider d) {
        int size = d.consumeInt(1, 64);
        long features = (d.consumeBoolean() ? 1L << VirtioFeatures.RING_F_INDIRECT_DESC : 0)
                | (d.consumeBoolean() ? 1L << VirtioFeatures.RING_F_EVENT_IDX : 0)
                | (d.consumeBoolean() ? 1L << VirtioFeatures.F_IN_ORDER : 0);
        MEM.ram().fill((byte) 0);
        MemorySegment ring = MEM.at(RING_GPA, 4096);
        MemorySegment desc = ring.asSlice(0, RingLayout.PACKED.descBytes(size));
        MemorySegment driver = ring.asSlice(DRIVER_OFF, PackedEvent.SIZE);
        MemorySegment device = ring.asSlice(DEVICE_OFF, PackedEvent.SIZE);
        long lo = MEM.gpaBase();
        for (int i = 0; i < size; i++) {
            long addr = switch (d.consumeInt(0, 3)) {
                case 0 -> d.consumeLong();
                case 1 -> DATA_GPA + d.consumeInt(0, 16 * 1024);
                case 2 -> RING_GPA + d.consumeInt(0, 4096);
                default -> lo + d.consumeLong(0, RAM);
            };
            int len = d.consumeBoolean() ? d.consumeInt(0, 4096) : d.consumeInt();
            int id = d.consumeBoolean() ? d.consumeInt(0, size) : d.consumeInt(0, 0xffff);
            int low = d.pickValue(new int[]{0, PackedDesc.F_NEXT, PackedDesc.F_WRITE, PackedDesc.F_WRITE | PackedDesc.F_NEXT,
                    PackedDesc.F_INDIRECT, d.consumeInt(0, 0xffff)});
            int pattern = d.pickValue(new int[]{PackedDesc.availFlags(true), PackedDesc.availFlags(false),
                    PackedDesc.usedFlags(true), PackedDesc.usedFlags(false)});
            PackedDesc.putPlain(desc, PackedDesc.offset(i), addr, len, id, (low & ~(PackedDesc.F_AVAIL | PackedDesc.F_USED))
                    | pattern);
        }
        PackedEvent.set(driver, d.consumeInt(0, 0xffff), d.consumeInt(0, 3));
        int base = d.consumeBoolean() ? 0x8000 : d.consumeInt(0, 0xffff) & 0xffff;
        if (RingLayout.PACKED.checkBase(base, size) != null) {
            base = 0x8000;
        }
        int ops = d.consumeInt(0, 96);
        byte[] script = d.consumeBytes(ops);
        byte[] rest = d.consumeRemainingAsBytes();
        MemorySegment.copy(MemorySegment.ofArray(rest), 0, MEM.at(DATA_GPA, 16 * 1024), 0,
                Math.min(rest.length, 16 * 1024));
        MemorySegment.copy(MEM.ram(), 0, MemorySegment.ofArray(SNAP), 0, RAM);

        PackedVirtqueue q = start(size, features, desc, driver, device, base);
        List<Integer> inFlight = new ArrayList<>();
        List<Long> writable = new ArrayList<>();
        boolean[] given = new boolean[size];
        // the newest taken entries that were not completed yet can be rewound; track completions per entry
        List<Boolean> completed = new ArrayList<>();
        for (byte b : script) {
            int op = b & 0xff;
            switch (op % 9) {
                case 0, 1 -> {
                    int r = q.next(CHAIN);
                    if (r == DeviceQueue.BROKEN) {
                        if (q.brokenReason() == null) {
                            throw new AssertionError("broken without a reason");
                        }
                        checkWrites(size);
                        return;
                    }
                    if (r == DeviceQueue.CHAIN) {
                        checkInside(CHAIN);
                        int id = CHAIN.head();
                        boolean live = false;
                        for (int k = 0; k < inFlight.size(); k++) {
                            live |= inFlight.get(k) == id && !completed.get(k); // completed ids are the driver's again
                        }
                        if (id < 0 || id >= size || live) {
                            throw new AssertionError("id " + id + " handed out while in flight or out of range");
                        }
                        inFlight.add(id);
                        writable.add(CHAIN.writableBytes());
                        completed.add(false);
                    }
                }
                case 2, 3 -> {
                    int live = countLive(completed);
                    if (live > 0) {
                        int pick = (op >>> 4) % live;
                        int at = nthLive(completed, pick);
                        int id = inFlight.get(at);
                        long w = writable.get(at);
                        int len = w == 0 ? 0 : (int) Math.min(w, (op >>> 2) * 37L);
                        q.addUsed(id, len);
                        completed.set(at, true);
                        given[id] = true;
                    }
                }
                case 4 -> q.publishUsed();
                case 5 -> {
                    // rewind the newest uncompleted entries (what the engines do)
                    int n = 0;
                    for (int k = completed.size() - 1; k >= 0 && !completed.get(k) && n < (op >>> 4) + 1; k--) {
                        n++;
                    }
                    if (n > 0) {
                        q.rewind(n);
                        for (int k = 0; k < n; k++) {
                            int last = inFlight.size() - 1;
                            inFlight.remove(last);
                            writable.remove(last);
                            completed.remove(last);
                        }
                    }
                }
                case 6 -> {
                    switch ((op >>> 4) % 3) {
                        case 0 -> q.needsCall();
                        case 1 -> q.enableNotification();
                        default -> q.disableNotification();
                    }
                }
                case 7 -> {
                    q.returnInFlight();
                    for (int k = 0; k < inFlight.size(); k++) {
                        if (!completed.get(k)) {
                            given[inFlight.get(k)] = true; // may be used with length 0
                        }
                    }
                    inFlight.clear();
                    writable.clear();
                    completed.clear();
                }
                default -> {
                    q.returnInFlight();
                    for (int k = 0; k < inFlight.size(); k++) {
                        given[inFlight.get(k)] = true;
                    }
                    inFlight.clear();
                    writable.clear();
                    completed.clear();
                    if (q.inFlight() != 0) {
                        throw new AssertionError("in flight after returnInFlight: " + q.inFlight());
                    }
                    int b2 = q.stop();
                    String bad = RingLayout.PACKED.checkBase(b2, size);
                    if (bad != null) {
                        throw new AssertionError("stop returned a base the session would refuse: " + bad);
                    }
                    if (q.isBroken()) {
                        checkWrites(size);
                        return;
                    }
                    q = start(size, features, desc, driver, device, b2);
                }
            }
            // drop fully completed entries from the front, as the queue does
            while (!completed.isEmpty() && completed.get(0)) {
                inFlight.remove(0);
                writable.remove(0);
                completed.remove(0);
            }
            if (!q.isBroken() && q.inFlight() != countLive(completed)) {
                throw new AssertionError("inFlight " + q.inFlight() + " but the model has " + countLive(completed));
            }
        }
        q.publishUsed();
        checkWrites(size);
        checkUsedIds(desc, size, given);
    }

    private static PackedVirtqueue start(int size, long features, MemorySegment desc, MemorySegment driver,
                                         MemorySegment device, int base) {
        PackedVirtqueue q = new PackedVirtqueue("fuzz");
        q.setSize(size);
        q.setFeatures(features);
        q.setMemory(GUEST);
        q.setRings(desc, driver, device);
        q.setBase(base);
        q.start();
        return q;
    }

    private static int countLive(List<Boolean> completed) {
        int n = 0;
        for (boolean c : completed) {
            if (!c) {
                n++;
            }
        }
        return n;
    }

    private static int nthLive(List<Boolean> completed, int k) {
        for (int i = 0; i < completed.size(); i++) {
            if (!completed.get(i) && k-- == 0) {
                return i;
            }
        }
        throw new IllegalStateException();
    }

    /** Only the descriptor ring's len/id/flags and the device area may differ from the snapshot. */
    private static void checkWrites(int size) {
        MemorySegment now = MEM.ram();
        MemorySegment snap = MemorySegment.ofArray(SNAP);
        long ringOff = RING_GPA - MEM.gpaBase();
        long descEnd = ringOff + RingLayout.PACKED.descBytes(size);
        long devOff = ringOff + DEVICE_OFF;
        long pos = 0;
        while (pos < RAM) {
            long m = MemorySegment.mismatch(snap, pos, RAM, now, pos, RAM);
            if (m < 0) {
                return;
            }
            long i = pos + m;
            boolean inDesc = i >= ringOff && i < descEnd && (i - ringOff) % PackedDesc.SIZE >= PackedDesc.LEN_OFFSET;
            boolean inDevice = i >= devOff && i < devOff + PackedEvent.SIZE;
            if (!inDesc && !inDevice) {
                throw new AssertionError("device wrote guest byte at offset 0x" + Long.toHexString(i));
            }
            pos = i + 1;
        }
    }

    /** Every descriptor the device changed carries an id it was given back. */
    private static void checkUsedIds(MemorySegment desc, int size, boolean[] given) {
        long ringOff = RING_GPA - MEM.gpaBase();
        for (int s = 0; s < size; s++) {
            boolean changed = false;
            for (int b = (int) PackedDesc.LEN_OFFSET; b < PackedDesc.SIZE; b++) {
                if (SNAP[(int) (ringOff + (long) s * PackedDesc.SIZE + b)]
                        != desc.get(java.lang.foreign.ValueLayout.JAVA_BYTE, (long) s * PackedDesc.SIZE + b)) {
                    changed = true;
                }
            }
            if (changed) {
                int id = PackedDesc.id(desc, PackedDesc.offset(s));
                if (id >= size || !given[id]) {
                    throw new AssertionError("slot " + s + " holds used id " + id + " never given back");
                }
            }
        }
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
