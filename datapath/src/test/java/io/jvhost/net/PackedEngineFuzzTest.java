package io.jvhost.net;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.DeviceQueue;
import io.jvhost.virtq.PackedDesc;
import io.jvhost.virtq.PackedEvent;
import io.jvhost.virtq.RingLayout;
import io.jvhost.virtq.RingSetup;
import io.jvhost.virtq.VirtqError;
import io.jvhost.virtq.Vring;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.logging.Level;
import java.util.logging.Logger;

import static io.jvhost.net.EngineFuzzTest.BACKING;
import static io.jvhost.net.EngineFuzzTest.CALL_FD;
import static io.jvhost.net.EngineFuzzTest.GPA;
import static io.jvhost.net.EngineFuzzTest.GUARD;
import static io.jvhost.net.EngineFuzzTest.IO;
import static io.jvhost.net.EngineFuzzTest.LATENCY;
import static io.jvhost.net.EngineFuzzTest.MAX_QUEUE;
import static io.jvhost.net.EngineFuzzTest.MAX_RX_FRAME;
import static io.jvhost.net.EngineFuzzTest.MEM;
import static io.jvhost.net.EngineFuzzTest.MTUS;
import static io.jvhost.net.EngineFuzzTest.RAM;
import static io.jvhost.net.EngineFuzzTest.RX_RING;
import static io.jvhost.net.EngineFuzzTest.SNAP;
import static io.jvhost.net.EngineFuzzTest.SNAPSEG;
import static io.jvhost.net.EngineFuzzTest.SOCK;
import static io.jvhost.net.EngineFuzzTest.SPLITS;
import static io.jvhost.net.EngineFuzzTest.TABLE;
import static io.jvhost.net.EngineFuzzTest.TX_RING;

/**
 * {@link EngineFuzzTest}'s packed counterpart: the same TX and RX engines, the same memory, socket
 * pair and worker calls, over a packed ring ({@code VIRTIO_F_RING_PACKED}, any size 1..256, with or
 * without IN_ORDER, INDIRECT_DESC, EVENT_IDX, MRG_RXBUF, offloads). The guest is a driver model
 * that makes well-formed chains available (direct chains that wrap past the last slot, indirect
 * tables, buffer ids reused once returned) and reads used descriptors as Linux does, and that the
 * input may turn hostile at any point (raw descriptor writes: any flags, ids, addresses, lengths;
 * any driver event area).
 *
 * <p>Properties:
 * <ol>
 *   <li>Nothing leaves the engines; a violation only breaks the queue, with a reason and message
 *       (never {@link VirtqError#MEMORY_FAULT}: the memory never shrinks here).</li>
 *   <li>Guest memory changes only where the device may write: len, id and flags of descriptor ring
 *       slots, the device event area, and for RX the writable buffers of chains made available.</li>
 *   <li>Every used descriptor names a buffer in flight, each once (IN_ORDER: the oldest ones up to
 *       it); with IN_ORDER a buffer with a writable part is never elided; a TX length is 0, an RX
 *       length within the buffer; {@code GET_VRING_BASE} gives a base the session accepts.</li>
 *   <li>While the driver stayed well-formed (and its buffers never overlapped): every TX record is
 *       the readable bytes of a chain made available, in order; every RX frame the guest gets is a
 *       frame the host wrote, whole and in order (num_buffers buffers with MRG_RXBUF).</li>
 *   <li>After the run, a stop and restart at the returned base carries one clean frame.</li>
 * </ol>
 * Committed inputs under {@code src/test/resources/io/jvhost/net/PackedEngineFuzzTestInputs/}.
 */
class PackedEngineFuzzTest {
    private static final Logger QUIET = Logger.getLogger("io.jvhost");

    static final int DESC_OFF = 0;
    static final int DRIVER_OFF = 4096;
    static final int DEVICE_OFF = 4096 + 64;
    static final int DATA_OFF = 8192;
    static final int TABLE_SPAN = 4096;
    static final int TABLES = 4;
    static final int TABLE_OFF = RAM - TABLES * TABLE_SPAN;
    static final int[] BUDGETS = {1, 2, 3, 4, 8, 16, 32, 64, 256};

    static {
        QUIET.setLevel(Level.OFF);
    }

    @FuzzTest(maxDuration = "60s")
    void tx(FuzzedDataProvider d) {
        new Run(d, true).run();
    }

    @FuzzTest(maxDuration = "60s")
    void rx(FuzzedDataProvider d) {
        new Run(d, false).run();
    }

    /** A chain the driver made available. */
    record Offer(int id, int slots, long[] gpas, int[] lens, boolean write, byte[] bytes, int table) {
        long capacity() {
            long s = 0;
            for (int l : lens) {
                s += l;
            }
            return s;
        }
    }

    static final class Run {
        final FuzzedDataProvider d;
        final boolean isTx;
        final Arena arena = Arena.ofConfined();
        final QueueCounters counters = new QueueCounters();
        final Vring ring = new Vring("pfuzz");
        TxEngine tx;
        RxEngine rx;

        long features;
        int mtu;
        int size;
        int hdr;
        int tableIdx;
        boolean uring;
        boolean callFd;
        boolean started;
        boolean enabled = true;
        boolean inOrder;
        int base = PackedEvent.offWrap(0, true);

        // driver model
        int availIdx;
        boolean availWrap = true;
        int usedIdx;
        boolean usedWrap = true;
        Offer[] byId;
        final ArrayDeque<Integer> order = new ArrayDeque<>();
        final List<Offer> offered = new ArrayList<>();
        int nextId;
        long bump = DATA_OFF;
        int nextTable;
        int[] tableOwner = new int[TABLES];
        /** The driver wrote something no well-formed driver would: content checks are off. */
        boolean hostile;
        /** Buffers were placed over bytes of earlier ones: content checks are off. */
        boolean overlap;
        /** Completed offers, in completion order, with the used length (-1: elided in an IN_ORDER run). */
        final List<Offer> done = new ArrayList<>();
        final List<Integer> doneLens = new ArrayList<>();
        /** Writable ranges ever offered ([from, to) RAM offsets). */
        final List<long[]> rxAllowed = new ArrayList<>();

        final List<byte[]> records = new ArrayList<>();
        final List<byte[]> frames = new ArrayList<>();
        final List<byte[]> sent = new ArrayList<>();
        int framesSent;

        Run(FuzzedDataProvider d, boolean isTx) {
            this.d = d;
            this.isTx = isTx;
        }

        static MemorySegment ram() {
            return BACKING.asSlice(GUARD, RAM);
        }

        void run() {
            try {
                drainSockets();
                EventFd.drain(CALL_FD);
                configure();
                prepareGuest();
                startRing(base);
                if (!isTx) {
                    makeFrames();
                }
                int ops = 0;
                while (d.remainingBytes() > 0 && ops++ < 64) {
                    op(d.consumeInt(0, 11));
                    pollUsed();
                }
                settle();
                if (isTx) {
                    drainTx();
                }
                stopRing();
                pollUsed();
                check();
                restartAndExchange();
            } finally {
                arena.close();
            }
        }

        void configure() {
            int fb = d.consumeInt(0, 0xffff);
            int[] bits = {VirtioFeatures.F_VERSION_1, VirtioFeatures.NET_F_MRG_RXBUF, VirtioFeatures.RING_F_EVENT_IDX,
                VirtioFeatures.RING_F_INDIRECT_DESC, VirtioFeatures.F_IN_ORDER, VirtioFeatures.NET_F_CSUM,
                VirtioFeatures.NET_F_GUEST_CSUM, VirtioFeatures.NET_F_HOST_TSO4, VirtioFeatures.NET_F_HOST_TSO6,
                VirtioFeatures.NET_F_HOST_UFO, VirtioFeatures.NET_F_HOST_USO, VirtioFeatures.NET_F_GUEST_TSO4,
                VirtioFeatures.NET_F_GUEST_TSO6, VirtioFeatures.NET_F_GUEST_UFO, VirtioFeatures.NET_F_GUEST_USO4};
            features = 1L << VirtioFeatures.F_RING_PACKED;
            for (int i = 0; i < bits.length; i++) {
                if ((fb & (1 << i)) != 0) {
                    features |= 1L << bits[i];
                }
            }
            inOrder = VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER);
            mtu = MTUS[d.consumeInt(0, MTUS.length - 1)];
            size = d.consumeBoolean() ? 1 << d.consumeInt(0, 8) : d.consumeInt(1, 256);
            hdr = VirtioNetHdr.size(features);
            tableIdx = d.consumeInt(0, SPLITS.length - 1);
            uring = d.consumeBoolean() && TX_RING != null;
            callFd = d.consumeBoolean();
            byId = new Offer[size];
            Arrays.fill(tableOwner, -1);
            if (isTx) {
                tx = new TxEngine(0, ring, arena, counters, LATENCY);
                tx.useRing(uring ? TX_RING : null, arena);
                tx.configure(SOCK[0], hdr, new TxValidator(features, mtu));
            } else {
                rx = new RxEngine(0, ring, arena, counters, LATENCY, MAX_QUEUE);
                rx.useRing(uring ? RX_RING : null);
                rx.configure(SOCK[0], hdr, VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF),
                        VirtioFeatures.guestGso(features), mtu);
            }
        }

        void prepareGuest() {
            BACKING.asSlice(0, GUARD).fill((byte) 0x5a);
            BACKING.asSlice(GUARD + RAM, GUARD).fill((byte) 0x5a);
            MemorySegment r = ram();
            r.fill((byte) 0);
            r.asSlice(DATA_OFF, TABLE_OFF - DATA_OFF).fill((byte) d.consumeInt(0, 255));
            PackedEvent.set(r.asSlice(DRIVER_OFF, PackedEvent.SIZE), 0, d.consumeBoolean()
                    ? PackedEvent.FLAG_ENABLE : PackedEvent.FLAG_DISABLE);
            MemorySegment.copy(BACKING, 0, SNAPSEG, 0, BACKING.byteSize());
        }

        /** A guest store of {@code len} bytes at RAM offset {@code off}: mirrored into the snapshot. */
        void mirror(long off, long len) {
            MemorySegment.copy(BACKING, GUARD + off, SNAPSEG, GUARD + off, len);
        }

        MemorySegment desc() {
            return ram().asSlice(DESC_OFF, RingLayout.PACKED.descBytes(size));
        }

        // ------------------------------------------------------------------ the driver

        int freeSlots() {
            int used = 0;
            for (Offer o : byId) {
                if (o != null) {
                    used += o.slots();
                }
            }
            return size - used;
        }

        int freeId() {
            for (int k = 0; k < size; k++) {
                int id = (nextId + k) % size;
                if (byId[id] == null) {
                    nextId = (id + 1) % size;
                    return id;
                }
            }
            return -1;
        }

        long place(int len) {
            if (bump + len > TABLE_OFF) {
                bump = DATA_OFF;
                // TX: may land on a buffer still in flight; RX: over a frame the checks read at the end
                overlap |= !isTx;
                for (Offer o : byId) {
                    if (o != null) {
                        overlap = true;
                    }
                }
            }
            long at = bump;
            bump = (bump + len + 63) & ~63L;
            return at;
        }

        void offerChain() {
            int id = freeId();
            if (id < 0) {
                return;
            }
            boolean indirect = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC) && d.consumeBoolean();
            int parts = d.consumeInt(1, 3);
            int slots = indirect ? 1 : parts;
            if (slots > freeSlots()) {
                return;
            }
            int table = -1;
            if (indirect) {
                table = nextTable;
                if (tableOwner[table] >= 0 && byId[tableOwner[table]] != null) {
                    return; // its chain is still in flight
                }
                nextTable = (nextTable + 1) % TABLES;
            }
            int minNeed = mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN + hdr;
            int[] totals = isTx
                    ? new int[] {hdr + 60, hdr + VirtioNetHdr.ETH_HLEN, minNeed, hdr + 1514, hdr + 32000, hdr + 9018}
                    : new int[] {2048, 1536, 4096, minNeed, VirtioNetHdr.MAX_GSO_FRAME + hdr, 256, hdr + 60};
            int total = Math.max(parts, totals[d.consumeInt(0, totals.length - 1)] + d.consumeInt(-2, 2));
            int[] lens = new int[parts];
            long[] gpas = new long[parts];
            int left = total;
            for (int p = 0; p < parts; p++) {
                lens[p] = p == parts - 1 ? left : Math.max(1, left / (parts - p));
                left -= lens[p];
            }
            for (int p = 0; p < parts; p++) {
                gpas[p] = place(lens[p]);
            }
            MemorySegment r = ram();
            byte[] bytes = null;
            if (isTx) {
                // header: zeros (no offload) or fuzzed fields, scattered like the frame
                if (d.consumeBoolean()) {
                    byte[] h = new byte[hdr];
                    MemorySegment hs = MemorySegment.ofArray(new byte[VirtioNetHdr.SIZE]);
                    VirtioNetHdr.flags(hs, 0, d.consumeInt(0, 255));
                    VirtioNetHdr.gsoType(hs, 0, d.consumeInt(0, 255));
                    VirtioNetHdr.hdrLen(hs, 0, d.consumeInt(0, 0xffff));
                    VirtioNetHdr.gsoSize(hs, 0, d.consumeInt(0, 0xffff));
                    VirtioNetHdr.csumStart(hs, 0, d.consumeInt(0, 0xffff));
                    VirtioNetHdr.csumOffset(hs, 0, d.consumeInt(0, 0xffff));
                    MemorySegment.copy(hs, ValueLayout.JAVA_BYTE, 0, h, 0, hdr);
                    int p = 0;
                    for (int k = 0; k < parts && p < hdr; k++) {
                        int c = Math.min(lens[k], hdr - p);
                        MemorySegment.copy(h, p, r, ValueLayout.JAVA_BYTE, gpas[k], c);
                        mirror(gpas[k], c);
                        p += c;
                    }
                } else {
                    for (int k = 0, p = 0; k < parts && p < hdr; k++) {
                        int c = Math.min(lens[k], hdr - p);
                        r.asSlice(gpas[k], c).fill((byte) 0);
                        mirror(gpas[k], c);
                        p += c;
                    }
                }
                bytes = new byte[total];
                int p = 0;
                for (int k = 0; k < parts; k++) {
                    MemorySegment.copy(r, ValueLayout.JAVA_BYTE, gpas[k], bytes, p, lens[k]);
                    p += lens[k];
                }
            } else {
                for (int k = 0; k < parts; k++) {
                    rxAllowed.add(new long[] {gpas[k], gpas[k] + lens[k]});
                }
            }
            int dir = isTx ? 0 : PackedDesc.F_WRITE;
            MemorySegment ring = desc();
            if (indirect) {
                long at = TABLE_OFF + (long) table * TABLE_SPAN;
                MemorySegment t = r.asSlice(at, (long) parts * PackedDesc.SIZE);
                for (int p = 0; p < parts; p++) {
                    PackedDesc.putPlain(t, (long) p * PackedDesc.SIZE, GPA + gpas[p], lens[p], 0, dir);
                }
                mirror(at, (long) parts * PackedDesc.SIZE);
                tableOwner[table] = id;
                long off = PackedDesc.offset(availIdx);
                PackedDesc.put(ring, off, GPA + at, parts * PackedDesc.SIZE, id);
                PackedDesc.flagsRelease(ring, off, PackedDesc.F_INDIRECT | PackedDesc.availFlags(availWrap));
                mirror(DESC_OFF + off, PackedDesc.SIZE);
                advanceAvail(1);
            } else {
                int head = availIdx;
                boolean headWrap = availWrap;
                int slot = head;
                boolean wrap = headWrap;
                for (int p = 0; p < parts; p++) {
                    long off = PackedDesc.offset(slot);
                    PackedDesc.put(ring, off, GPA + gpas[p], lens[p], id);
                    int f = dir | (p < parts - 1 ? PackedDesc.F_NEXT : 0) | PackedDesc.availFlags(wrap);
                    if (p > 0) {
                        PackedDesc.flagsRelease(ring, off, f);
                        mirror(DESC_OFF + off, PackedDesc.SIZE);
                    }
                    if (++slot == size) {
                        slot = 0;
                        wrap = !wrap;
                    }
                }
                long off = PackedDesc.offset(head);
                PackedDesc.flagsRelease(ring, off, dir | (parts > 1 ? PackedDesc.F_NEXT : 0)
                        | PackedDesc.availFlags(headWrap));
                mirror(DESC_OFF + off, PackedDesc.SIZE);
                advanceAvail(parts);
            }
            Offer o = new Offer(id, slots, gpas, lens, !isTx, bytes, table);
            byId[id] = o;
            order.add(id);
            offered.add(o);
        }

        void advanceAvail(int n) {
            availIdx += n;
            if (availIdx >= size) {
                availIdx -= size;
                availWrap = !availWrap;
            }
        }

        /** Anything at a slot: the guest turns hostile. */
        void rawWrite() {
            hostile = true;
            int slot = d.consumeInt(0, size - 1);
            long addr = switch (d.consumeInt(0, 4)) {
                case 0 -> GPA + DATA_OFF + d.consumeInt(0, TABLE_OFF - DATA_OFF);
                case 1 -> GPA + d.consumeInt(0, RAM - 1);
                case 2 -> GPA + TABLE_OFF + (long) d.consumeInt(0, TABLES - 1) * TABLE_SPAN;
                case 3 -> d.consumeLong();
                default -> GPA + RAM - d.consumeInt(0, 4096);
            };
            int len = d.consumeBoolean() ? d.consumeInt(0, 70000) : d.consumeInt();
            int id = d.consumeBoolean() ? d.consumeInt(0, size) : d.consumeInt(0, 0xffff);
            int flags = d.consumeBoolean() ? d.consumeInt(0, 0xffff)
                    : d.consumeInt(0, 7) | PackedDesc.availFlags(d.consumeBoolean() ? availWrap : !availWrap);
            long off = PackedDesc.offset(slot);
            PackedDesc.put(desc(), off, addr, len, id);
            PackedDesc.flagsRelease(desc(), off, flags);
            mirror(DESC_OFF + off, PackedDesc.SIZE);
            if (!isTx) {
                long a = addr - GPA;
                long l = Integer.toUnsignedLong(len);
                if (a >= 0 && a < RAM) {
                    rxAllowed.add(new long[] {a, Math.min(RAM, a + l)});
                }
                if ((flags & PackedDesc.F_INDIRECT) != 0) {
                    rxAllowed.add(new long[] {DATA_OFF, RAM}); // a table anywhere: anything it names
                    rxAllowed.add(new long[] {0, DATA_OFF});
                }
            }
        }

        /** Reads the used descriptors published since the last call, as Linux's driver does. */
        void pollUsed() {
            if (hostile) {
                return; // the ring holds the guest's own raw writes: what looks used may be its doing
            }
            MemorySegment ring = desc();
            for (int guard = 0; guard <= size; guard++) {
                long off = PackedDesc.offset(usedIdx);
                int f = PackedDesc.flagsAcquire(ring, off);
                if (!PackedDesc.isUsed(f, usedWrap)) {
                    return;
                }
                int id = PackedDesc.id(ring, off);
                int len = PackedDesc.len(ring, off);
                if (id >= size || byId[id] == null) {
                    if (hostile) {
                        return; // the guest broke its own bookkeeping
                    }
                    throw new AssertionError("used descriptor at slot " + usedIdx + " names id " + id
                            + ", not in flight (len " + len + ", ring " + Run.this.ring.queue() + ", base 0x" + Integer.toHexString(base)
                            + ", features 0x" + Long.toHexString(features) + ", in flight " + order + ")");
                }
                int slots = 0;
                if (inOrder) {
                    while (true) {
                        Integer o = order.poll();
                        if (o == null) {
                            if (hostile) {
                                return;
                            }
                            throw new AssertionError("IN_ORDER used id " + id + " not among the ids in flight");
                        }
                        Offer of = byId[o];
                        byId[o] = null;
                        slots += of.slots();
                        done.add(of);
                        if (o == id) {
                            doneLens.add(len);
                            break;
                        }
                        if (of.write() && !hostile) {
                            throw new AssertionError("IN_ORDER: writable buffer " + o + " elided in a run ending at "
                                    + id + ": the driver cannot learn its length");
                        }
                        doneLens.add(-1);
                    }
                } else {
                    order.remove(id);
                    Offer of = byId[id];
                    byId[id] = null;
                    slots = of.slots();
                    done.add(of);
                    doneLens.add(len);
                }
                if (isTx && len != 0) {
                    throw new AssertionError("TX used length " + len + " (id " + id + ", hostile " + hostile + ", log "
                            + log + ")");
                }
                // (a hostile write may have given a slot the driver's model knows as another buffer's)
                if (!isTx && !hostile && Integer.toUnsignedLong(len) > done.get(done.size() - 1).capacity()) {
                    throw new AssertionError("RX used length " + Integer.toUnsignedLong(len) + " > buffer "
                            + done.get(done.size() - 1).capacity() + " (id " + id + ", hostile " + hostile + ", features 0x"
                            + Long.toHexString(features) + ", log " + log + ")");
                }
                usedIdx += slots;
                if (usedIdx >= size) {
                    usedIdx -= size;
                    usedWrap = !usedWrap;
                }
            }
        }

        // ------------------------------------------------------------------ the worker

        void startRing(int b) {
            ring.start(new RingSetup(size, MEM.userAddress(GPA + DESC_OFF), MEM.userAddress(GPA + DRIVER_OFF),
                    MEM.userAddress(GPA + DEVICE_OFF), b, features, false, 0, -1, callFd ? CALL_FD : -1, -1, enabled),
                    TABLE[tableIdx]);
            started = true;
        }

        void stopRing() {
            if (!started) {
                return;
            }
            if (isTx) {
                tx.releasePending();
            } else {
                rx.releaseWindow();
            }
            if (ring.queue().inFlight() != 0 && !ring.queue().isBroken()) {
                throw new AssertionError("chains in flight after the engine gave them back: " + ring.queue().inFlight());
            }
            base = ring.stop();
            String bad = RingLayout.PACKED.checkBase(base, size);
            if (bad != null) {
                throw new AssertionError("GET_VRING_BASE " + bad);
            }
            started = false;
        }

        boolean active() {
            return started && (isTx || enabled) && !ring.queue().isBroken();
        }

        void cycle(int budget) {
            boolean on = active();
            int work = 0;
            if (isTx) {
                if (on && !tx.backpressured()) {
                    work = tx.process(budget, System.nanoTime());
                }
                if (work == 0 && on && !tx.backpressured()) {
                    tx.armNotify();
                }
            } else {
                if (on && !rx.needsBuffers()) {
                    work = rx.process(budget, System.nanoTime());
                }
                if (work == 0 && on && rx.needsBuffers()) {
                    rx.armNotify();
                }
            }
        }

        final StringBuilder log = new StringBuilder();

        void op(int op) {
            int budget = BUDGETS[d.consumeInt(0, BUDGETS.length - 1)];
            log.append(op).append(' ');
            switch (op) {
                case 0, 1 -> cycle(budget);
                case 2 -> {
                    int k = d.consumeInt(1, 4);
                    for (int i = 0; i < k; i++) {
                        offerChain();
                    }
                }
                case 3 -> rawWrite();
                case 4 -> {
                    if (isTx) {
                        drainTx();
                        tx.writable();
                    } else {
                        sendFrames(d.consumeInt(1, 4));
                    }
                }
                case 5 -> {
                    if (!isTx) {
                        rx.kicked();
                    }
                    cycle(budget);
                }
                case 6 -> {
                    if (isTx) {
                        if (active() && !tx.backpressured()) {
                            tx.armNotify();
                        }
                    } else if (active() && rx.needsBuffers()) {
                        rx.armNotify();
                    }
                }
                case 7 -> {
                    if (isTx) {
                        tx.releasePending();
                    } else {
                        rx.releaseWindow();
                    }
                    tableIdx = d.consumeInt(0, SPLITS.length - 1);
                    if (!ring.queue().setMemory(TABLE[tableIdx])) {
                        throw new AssertionError("a table covering the rings refused: " + ring.queue().brokenMessage());
                    }
                }
                case 8 -> {
                    boolean on = !enabled;
                    if (isTx) {
                        if (!on && active()) {
                            tx.process(size, System.nanoTime());
                        }
                    } else if (!on) {
                        rx.releaseWindow();
                    }
                    enabled = on;
                    ring.setEnabled(on);
                }
                case 9 -> {
                    if (started) {
                        stopRing();
                        pollUsed();
                        startRing(base);
                    }
                }
                case 10 -> {
                    int flags = d.consumeInt(0, 3);
                    int offWrap = d.consumeBoolean() ? d.consumeInt(0, 0xffff)
                            : PackedEvent.offWrap(d.consumeInt(0, size - 1), d.consumeBoolean());
                    MemorySegment a = ram().asSlice(DRIVER_OFF, PackedEvent.SIZE);
                    PackedEvent.set(a, offWrap, flags);
                    mirror(DRIVER_OFF, PackedEvent.SIZE);
                }
                default -> {
                    if (isTx) {
                        drainTx();
                    } else {
                        sendFrames(1);
                    }
                }
            }
        }

        void settle() {
            for (int i = 0; i < 6; i++) {
                if (isTx) {
                    cycle(64);
                    drainTx();
                    if (tx.backpressured()) {
                        tx.writable();
                    }
                } else {
                    sendFrames(frames.size());
                    rx.kicked();
                    cycle(64);
                }
                pollUsed();
            }
        }

        void makeFrames() {
            int n = d.consumeInt(0, 12);
            int seed = d.consumeInt();
            for (int i = 0; i < n; i++) {
                int len = switch (d.consumeInt(0, 3)) {
                    case 0 -> hdr + VirtioNetHdr.ETH_HLEN + d.consumeInt(0, 1518);
                    case 1 -> d.consumeInt(0, 64);
                    case 2 -> hdr + VirtioNetHdr.MAX_GSO_FRAME + d.consumeInt(-2, 2);
                    default -> d.consumeInt(0, MAX_RX_FRAME);
                };
                byte[] f = new byte[Math.max(0, Math.min(MAX_RX_FRAME, len))];
                new Random(seed * 1_000_003L + i).nextBytes(f);
                frames.add(f);
            }
        }

        void sendFrames(int n) {
            for (int i = 0; i < n && framesSent < frames.size(); i++) {
                byte[] f = frames.get(framesSent);
                MemorySegment.copy(f, 0, IO, ValueLayout.JAVA_BYTE, 0, f.length);
                long w = Fds.write(SOCK[1], IO, f.length);
                if (w == Fds.WOULD_BLOCK) {
                    return;
                }
                sent.add(f);
                framesSent++;
            }
        }

        void drainTx() {
            long n;
            while ((n = Fds.read(SOCK[1], IO, IO.byteSize())) != Fds.WOULD_BLOCK) {
                byte[] b = new byte[(int) n];
                MemorySegment.copy(IO, ValueLayout.JAVA_BYTE, 0, b, 0, b.length);
                records.add(b);
            }
        }

        static void drainSockets() {
            while (Fds.read(SOCK[0], IO, IO.byteSize()) != Fds.WOULD_BLOCK) {
                // stale records of an earlier input
            }
            while (Fds.read(SOCK[1], IO, IO.byteSize()) != Fds.WOULD_BLOCK) {
                // stale records of an earlier input
            }
        }

        // ------------------------------------------------------------------ checks

        void check() {
            DeviceQueue q = ring.queue();
            if (q.brokenReason() == VirtqError.MEMORY_FAULT) {
                throw new AssertionError("memory fault with memory that never shrinks: " + q.brokenMessage());
            }
            if (q.isBroken() && q.brokenMessage() == null) {
                throw new AssertionError("broken without a message");
            }
            checkMemory();
            if (hostile || overlap) {
                return;
            }
            if (isTx) {
                checkRecords();
            } else {
                checkFrames();
            }
        }

        /** Device writes only in slots' len/id/flags, the device area and (RX) offered writable buffers. */
        void checkMemory() {
            long descEnd = DESC_OFF + RingLayout.PACKED.descBytes(size);
            long pos = 0;
            long end = BACKING.byteSize();
            while (pos < end) {
                long m = MemorySegment.mismatch(SNAPSEG, pos, end, BACKING, pos, end);
                if (m < 0) {
                    return;
                }
                long at = pos + m;
                long off = at - GUARD;
                boolean ok = off >= DESC_OFF && off < descEnd && (off - DESC_OFF) % PackedDesc.SIZE >= PackedDesc.LEN_OFFSET
                        || off >= DEVICE_OFF && off < DEVICE_OFF + PackedEvent.SIZE;
                if (!ok && !isTx) {
                    for (long[] r : rxAllowed) {
                        if (off >= r[0] && off < r[1]) {
                            ok = true;
                            break;
                        }
                    }
                }
                if (!ok) {
                    String where = at < GUARD ? "guard below RAM" : at >= GUARD + RAM ? "guard above RAM"
                            : "RAM offset 0x" + Long.toHexString(off);
                    throw new AssertionError((isTx ? "TX" : "RX") + " engine wrote guest memory it was not given: "
                            + where);
                }
                pos = at + 1;
            }
        }

        /** Records are the readable bytes of offered chains, in the order offered. */
        void checkRecords() {
            if (records.size() != counters.get(Counter.TX_FRAMES)) {
                throw new AssertionError(records.size() + " TX records, TX_FRAMES " + counters.get(Counter.TX_FRAMES));
            }
            int e = 0;
            for (int i = 0; i < records.size(); i++) {
                byte[] rec = records.get(i);
                while (e < offered.size() && !Arrays.equals(rec, offered.get(e).bytes())) {
                    e++;
                }
                if (e == offered.size()) {
                    StringBuilder sb = new StringBuilder();
                    for (Offer o : offered) {
                        sb.append(o.id()).append(':').append(o.bytes().length).append(' ');
                    }
                    StringBuilder rs = new StringBuilder();
                    for (byte[] rr : records) {
                        rs.append(rr.length).append(' ');
                    }
                    throw new AssertionError("TX record " + i + " (" + rec.length + " bytes) is not the readable data"
                            + " of a chain offered after the previous record's; offered " + sb + "; records " + rs
                            + "; log " + log);
                }
                e++;
            }
        }

        /** The frames the guest got are frames the host wrote, whole and in order. */
        void checkFrames() {
            int s = 0;
            for (Received f : received(0)) {
                while (s < sent.size() && !sameFrame(sent.get(s), f.bytes(), f.buffers())) {
                    s++;
                }
                if (s == sent.size()) {
                    StringBuilder sb = new StringBuilder();
                    for (byte[] x : sent) {
                        sb.append(x.length).append(' ');
                    }
                    StringBuilder rs = new StringBuilder();
                    for (Received x : received(0)) {
                        rs.append(x.bytes().length).append('/').append(x.buffers()).append(' ');
                    }
                    StringBuilder ds = new StringBuilder();
                    for (int k = 0; k < done.size(); k++) {
                        ds.append(done.get(k).id()).append(':').append(doneLens.get(k)).append('/')
                                .append(done.get(k).capacity()).append(' ');
                    }
                    throw new AssertionError("RX frame of " + f.bytes().length + " bytes (" + f.buffers() + " buffers) is"
                            + " not a frame the host wrote after the previous one; sent " + sb + "; received " + rs
                            + "; done " + ds + "; features 0x" + Long.toHexString(features) + "; log " + log);
                }
                s++;
            }
        }

        record Received(byte[] bytes, int buffers) {
        }

        /** The frames in the used buffers from {@code done[from]} on (num_buffers buffers each with MRG_RXBUF). */
        List<Received> received(int from) {
            boolean mergeable = VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF);
            MemorySegment r = ram();
            List<Received> out = new ArrayList<>();
            for (int k = from; k < done.size(); k++) {
                int len = doneLens.get(k);
                if (len <= 0) {
                    continue; // returned unused
                }
                Offer first = done.get(k);
                int buffers = 1;
                if (hdr == VirtioNetHdr.SIZE && mergeable) {
                    buffers = Short.toUnsignedInt(r.get(VirtioNetHdr.LE16, first.gpas()[0]
                            + VirtioNetHdr.NUM_BUFFERS_OFFSET));
                    if (buffers < 1 || k + buffers > done.size()) {
                        throw new AssertionError("num_buffers " + buffers + " at used buffer " + k + " of " + done.size());
                    }
                }
                java.io.ByteArrayOutputStream got = new java.io.ByteArrayOutputStream();
                for (int b = 0; b < buffers; b++) {
                    Offer o = done.get(k + b);
                    int left = doneLens.get(k + b);
                    for (int p = 0; p < o.gpas().length && left > 0; p++) {
                        int c = Math.min(left, o.lens()[p]);
                        byte[] part = new byte[c];
                        MemorySegment.copy(r, ValueLayout.JAVA_BYTE, o.gpas()[p], part, 0, c);
                        got.writeBytes(part);
                        left -= c;
                    }
                }
                k += buffers - 1;
                out.add(new Received(got.toByteArray(), buffers));
            }
            return out;
        }

        /** The host's record (virtio-net header + frame) as the guest gets it: num_buffers set by the device. */
        boolean sameFrame(byte[] want, byte[] got, int buffers) {
            if (want.length != got.length) {
                return false;
            }
            byte[] w = want;
            if (hdr == VirtioNetHdr.SIZE && want.length > VirtioNetHdr.NUM_BUFFERS_OFFSET) {
                w = want.clone();
                w[VirtioNetHdr.NUM_BUFFERS_OFFSET] = (byte) buffers;
                if (w.length > VirtioNetHdr.NUM_BUFFERS_OFFSET + 1) {
                    w[VirtioNetHdr.NUM_BUFFERS_OFFSET + 1] = (byte) (buffers >>> 8);
                }
            }
            return Arrays.equals(w, got);
        }

        /** A stop and restart at the base, then one clean frame each way. */
        void restartAndExchange() {
            drainSockets();
            records.clear();
            if (hostile || ring.queue().isBroken()) {
                // a clean ring from a fresh start: reset as a device reset would
                ring.reset();
                base = PackedEvent.offWrap(0, true);
            }
            // The driver starts over at the base with an empty ring (what it had made available went
            // back at the stop; a clean chain must not queue behind a buffer too small for its frame).
            availIdx = base & PackedEvent.OFF_MASK;
            availWrap = (base & (1 << PackedEvent.WRAP_SHIFT)) != 0;
            usedIdx = availIdx;
            usedWrap = availWrap;
            MemorySegment dr = desc();
            dr.fill((byte) 0);
            for (int slot = 0; slot < size; slot++) {
                // each slot as the previous lap left it: used for the counter before the one it comes up with
                boolean next = slot >= availIdx ? availWrap : !availWrap;
                PackedDesc.putPlain(dr, PackedDesc.offset(slot), 0, 0, 0, PackedDesc.usedFlags(!next));
            }
            Arrays.fill(byId, null);
            order.clear();
            enabled = true;
            tableIdx = 0;
            hostile = false;
            PackedEvent.set(ram().asSlice(DRIVER_OFF, PackedEvent.SIZE), 0, PackedEvent.FLAG_ENABLE);
            startRing(base);
            int before = done.size();
            // one clean buffer: a 60-byte frame (TX) or room for any frame (RX)
            int id = freeId();
            int len = isTx ? hdr + 60 : VirtioNetHdr.MAX_GSO_FRAME + hdr + mtu + 64;
            long at = DATA_OFF;
            MemorySegment r = ram();
            byte[] frame = new byte[hdr + 60];
            for (int i = hdr; i < frame.length; i++) {
                frame[i] = (byte) (i * 7 + 1);
            }
            r.asSlice(at, len).fill((byte) 0);
            if (isTx) {
                MemorySegment.copy(frame, 0, r, ValueLayout.JAVA_BYTE, at, frame.length);
            }
            long off = PackedDesc.offset(availIdx);
            PackedDesc.put(desc(), off, GPA + at, len, id);
            PackedDesc.flagsRelease(desc(), off, (isTx ? 0 : PackedDesc.F_WRITE) | PackedDesc.availFlags(availWrap));
            Offer o = new Offer(id, 1, new long[] {at}, new int[] {len}, !isTx, frame, -1);
            byId[id] = o;
            order.add(id);
            advanceAvail(1);
            if (!isTx) {
                MemorySegment.copy(frame, 0, IO, ValueLayout.JAVA_BYTE, 0, frame.length);
                if (Fds.write(SOCK[1], IO, frame.length) != frame.length) {
                    throw new AssertionError("could not write the clean frame");
                }
                rx.kicked();
            } else if (tx.backpressured()) {
                tx.writable();
            }
            // (chains the engine gave back at the stop come first: TX sends them, RX may fill one)
            for (int i = 0; i < 8; i++) {
                cycle(64);
                if (isTx) {
                    drainTx();
                    if (tx.backpressured()) {
                        tx.writable();
                    }
                } else {
                    rx.kicked();
                }
                pollUsed();
            }
            if (ring.queue().isBroken()) {
                throw new AssertionError("a clean ring broke after the restart: " + ring.queue().brokenMessage());
            }
            if (isTx) {
                if (byId[id] != null || records.isEmpty() || !Arrays.equals(records.get(records.size() - 1), frame)) {
                    throw new AssertionError("clean TX frame not sent last: " + records.size() + " records ("
                            + ring.queue() + ")");
                }
            } else {
                boolean found = false;
                for (Received f : received(before)) {
                    found |= sameFrame(frame, f.bytes(), f.buffers());
                }
                if (!found) {
                    throw new AssertionError("after the restart the clean frame did not reach a buffer (" + ring.queue()
                            + ")");
                }
            }
            stopRing();
            drainSockets();
        }
    }
}
