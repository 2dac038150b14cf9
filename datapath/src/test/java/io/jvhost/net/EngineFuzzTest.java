package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.virtio.VirtioFeatures;
import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.driver.DriverMemory;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.VirtqError;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;
import io.jvhost.virtq.Vring;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Coverage-guided fuzzing (Jazzer) of {@link TxEngine} and {@link RxEngine} on the device side of a
 * {@link SplitVirtqueue} whose guest is hostile: the input writes the descriptor table (any
 * addr/len/flags/next: loops, addresses outside memory or inside the rings, indirect tables, zero
 * lengths, write-only buffers on TX, read-only ones on RX, huge lengths), the avail ring (entries,
 * idx moved in steps or jumped, flags, used_event), virtio-net headers and frame bytes; it picks
 * the negotiated features (VERSION_1 or the legacy header, MRG_RXBUF, EVENT_IDX, INDIRECT_DESC,
 * TSO/CSUM offloads), the MTU, io_uring or one system call per frame, and a sequence of the calls
 * {@code QueuePairWorker} makes (worker cycles with its idle path, {@code process} with various
 * budgets, {@code armNotify}, {@code kicked}, EPOLLOUT, ring disable/enable with the TX flush, a
 * memory-table swap, a stop and restart at the returned base). The "tap" is one end of an AF_UNIX
 * SOCK_SEQPACKET pair; for RX the input also decides the frames (0..70000 bytes) the host side
 * writes before and between the engine's calls.
 *
 * <p>Properties checked after every input (a reference walker re-reads each chain the device took
 * from a snapshot of guest memory taken before the engine ran):
 * <ol>
 *   <li>No exception leaves the engines: a hostile ring only marks the queue broken
 *       ({@link VirtqError}, with a reason). The worker treats anything thrown from a cycle as a
 *       failure that resets the pair, except {@code MemoryFault}, which only a front-end shrinking
 *       its memory can cause (never here), so nothing may be thrown at all.</li>
 *   <li>Guest memory (plus a guard page either side) changes only in the used ring (including
 *       {@code avail_event}) and, for RX, in the writable buffers of chains the device took. TX
 *       writes nothing but the used ring.</li>
 *   <li>Used ring: {@code used.idx} moved by no more than the chains taken, which were made
 *       available; each used id is the head at one of the taken avail positions, at most once per
 *       position; completion is in order (after the stop, the base reported equals
 *       {@code used.idx}); a used chain is well-formed; TX used lengths are 0; an RX used length is
 *       within the chain's writable bytes; a frame fills every buffer but its last; with a 12-byte
 *       header {@code num_buffers} equals the frame's used entries (1 without MRG_RXBUF); the bytes
 *       the guest gets are a frame the host wrote, whole and in order (frames may be dropped, never
 *       cut).</li>
 *   <li>Each TX record on the socket is at most header + the largest frame the negotiated features
 *       allow, passes {@link TxValidator}, and equals the readable bytes of a chain the engine took,
 *       in avail order; records are counted in {@link Counter#TX_FRAMES}.</li>
 *   <li>After the run (broken or not), a stop and restart of the ring as {@code QueuePairWorker}
 *       does it ({@code stopRing}/{@code startRing} on the same engine) carries one well-formed
 *       frame.</li>
 * </ol>
 * Where the guest made the device's own writes change what it reads (an RX buffer over the
 * descriptor table, the avail ring or an indirect table, or an indirect table inside the used
 * ring), the chains are no longer a function of the snapshot: such inputs check only properties 1,
 * 5, the guard pages and the TX "writes only the used ring" rule; an RX buffer over the used ring
 * skips the used-ring checks.
 *
 * <p>A normal test run replays the committed inputs under
 * {@code src/test/resources/io/jvhost/net/EngineFuzzTestInputs/<method>/}; with {@code JAZZER_FUZZ=1}
 * each method fuzzes for a bounded time and findings land there. Memory, the socket pair and the
 * io_uring instances are set up once per JVM; every input resets them.
 */
class EngineFuzzTest {
    private static final Logger QUIET = Logger.getLogger("io.jvhost");
    private static Level savedLevel;

    static final int RAM = 256 * 1024;
    static final int GUARD = 4096;
    static final long GPA = DriverMemory.DEFAULT_GPA_BASE;
    static final int MAX_QUEUE = 256;
    /** RAM layout: rings, buffer slots, indirect tables. */
    static final int DESC_OFF = 0;
    static final int AVAIL_OFF = 4096;
    static final int USED_OFF = 8192;
    static final int DATA_OFF = 12288;
    static final int SLOT = 2048;
    static final int TABLE_SPAN = 8192;
    static final int TABLES = 4;
    static final int TABLE_OFF = RAM - TABLES * TABLE_SPAN;
    static final int SLOTS = (TABLE_OFF - DATA_OFF) / SLOT;
    static final int MAX_RX_FRAME = 70_000;
    /** The device's iovec capacity per chain direction (TxEngine's and RxEngine's Chain). */
    static final int CHAIN_IOV = 512;
    static final int[] SPLITS = {1, 2, 4};
    static final int[] MTUS = {1500, 9000, 576, 1280};
    static final int[] BUDGETS = {1, 2, 3, 4, 8, 16, 32, 64, 256};

    /** Guard | RAM | guard: writes outside the RAM show in the guards. */
    static final MemorySegment BACKING = Arena.global().allocate(RAM + 2 * GUARD, 4096);
    static final DriverMemory MEM = DriverMemory.ofSegment(BACKING.asSlice(GUARD, RAM), GPA, -1, () -> { });
    static final GuestMemory[] TABLE = {MEM.guestMemory(1), MEM.guestMemory(2), MEM.guestMemory(4)};
    static final byte[] SNAP = new byte[(int) BACKING.byteSize()];
    static final MemorySegment SNAPSEG = MemorySegment.ofArray(SNAP);
    /** [engine side, host side], both non-blocking. */
    static final int[] SOCK = SeqPacketPair.open();
    static final MemorySegment IO = Arena.global().allocate(1 << 20, 64);
    static final int CALL_FD = EventFd.create(0, true);
    static final QueueLatency LATENCY = new QueueLatency();
    static final IoUring TX_RING = IoUring.unavailableReason() == null ? IoUring.create(64) : null;
    static final IoUring RX_RING = IoUring.unavailableReason() == null ? IoUring.create(RxEngine.RING_BATCH) : null;
    /** {@code -Djvhost.fuzz.trace=true}: print what each input does (replaying a finding). */
    static final boolean TRACE = Boolean.getBoolean("jvhost.fuzz.trace");

    /** {@code -Djvhost.fuzz.stats=true}: print totals over the inputs run (which paths the corpus reaches). */
    static final boolean STATS = Boolean.getBoolean("jvhost.fuzz.stats");
    static final java.util.TreeMap<String, Long> TOTALS = new java.util.TreeMap<>();

    static void count(String what) {
        if (STATS) {
            TOTALS.merge(what, 1L, Long::sum);
        }
    }

    static void trace(java.util.function.Supplier<String> s) {
        if (TRACE) {
            System.err.println("[fuzz] " + s.get());
        }
    }

    /** Background of the ring area (so that a stray write of zeros shows). */
    static final byte[] RING_PATTERN = new byte[DATA_OFF];

    static {
        for (int i = 0; i < DATA_OFF; i++) {
            RING_PATTERN[i] = (byte) (0xa5 ^ i);
        }
    }

    static {
        Fds.setNonBlocking(SOCK[0], true);
        Fds.setNonBlocking(SOCK[1], true);
    }

    @BeforeAll
    static void quiet() {
        savedLevel = QUIET.getLevel();
        QUIET.setLevel(Level.OFF); // every input breaks queues and drops frames on purpose
    }

    @AfterAll
    static void loud() {
        QUIET.setLevel(savedLevel);
        if (STATS) {
            TOTALS.forEach((k, v) -> System.err.println("[fuzz-stats] " + k + " = " + v));
        }
    }

    @FuzzTest(maxDuration = "60s")
    void tx(FuzzedDataProvider d) {
        new Run(d, true).run();
    }

    @FuzzTest(maxDuration = "60s")
    void rx(FuzzedDataProvider d) {
        new Run(d, false).run();
    }

    /** One input: set up, run the ops, check, restart. */
    static final class Run {
        final FuzzedDataProvider d;
        final boolean isTx;
        final Arena arena = Arena.ofConfined();
        final QueueCounters counters = new QueueCounters();
        final Vring ring = new Vring("fuzz");
        final SplitVirtqueue q = (SplitVirtqueue) ring.queue();

        long features;
        int mtu;
        int size;
        int mask;
        int hdr;
        int start;
        int tableIdx;
        boolean[] tablesUsed = new boolean[SPLITS.length];
        boolean callFd;
        boolean uring;
        TxEngine tx;
        RxEngine rx;
        boolean started;
        boolean enabled = true;

        /** Highest (base - start) seen after any call that takes chains. */
        int maxTaken;
        /** Highest (avail.idx - start) published (forward moves only). */
        int maxAvail;
        int availIdx;

        /** Used entries (id, len) as a driver polling after every engine call sees them. */
        final List<int[]> usedEntries = new ArrayList<>();
        int seenUsed;
        /** More entries were published at once than the ring holds (a head re-posted while in flight). */
        boolean lostTrack;

        final List<byte[]> records = new ArrayList<>();
        final List<byte[]> frames = new ArrayList<>();
        int framesSent;
        /** Frames the host wrote, in order. */
        final List<byte[]> sent = new ArrayList<>();

        Run(FuzzedDataProvider d, boolean isTx) {
            this.d = d;
            this.isTx = isTx;
        }

        void run() {
            try {
                drainSockets();
                EventFd.drain(CALL_FD);
                configure();
                writeGuest();
                startRing(start, d.consumeBoolean() ? start : d.consumeInt(0, 0xffff));
                if (!isTx) {
                    makeFrames();
                }
                MemorySegment.copy(BACKING, 0, SNAPSEG, 0, BACKING.byteSize());
                seenUsed = start;
                int ops = 0;
                trace(() -> (isTx ? "TX" : "RX") + " features=0x" + Long.toHexString(features) + " mtu=" + mtu + " size="
                        + size + " hdr=" + hdr + " start=" + start + " avail.idx=" + availIdx + " table=" + tableIdx
                        + " frames=" + frames.size());
                while (d.remainingBytes() > 0 && ops++ < 64) {
                    int op = d.consumeInt(0, 11);
                    op(op);
                    pollUsed();
                    trace(() -> "op " + op + " -> " + q + " taken=" + maxTaken + " avail=" + availIdx + " sent="
                            + framesSent + " records=" + records.size());
                }
                settle();
                if (isTx) {
                    drainTx();
                }
                stopRing();
                pollUsed();
                int usedIdx = Short.toUnsignedInt(ram().get(VringDesc.LE_SHORT, USED_OFF + VringUsed.IDX_OFFSET));
                int base = q.base();
                if (STATS) {
                    count("inputs " + (isTx ? "tx" : "rx"));
                    count(q.isBroken() ? "broken " + q.brokenReason() : "not broken");
                    count("io_uring " + uring + ", mergeable " + VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF)
                            + ", hdr " + hdr);
                    for (DropReason r : DropReason.values()) {
                        if (counters.drops(r) > 0) {
                            count("drop " + r);
                        }
                    }
                    for (Counter c : new Counter[] {Counter.TX_FRAMES, Counter.RX_FRAMES, Counter.TX_BACKPRESSURE}) {
                        if (counters.get(c) > 0) {
                            count("counter " + c);
                        }
                    }
                    if (lostTrack) {
                        count("lostTrack");
                    }
                }
                check(usedIdx, base);
                restartAndExchange(base);
            } finally {
                arena.close();
            }
        }

        // ------------------------------------------------------------------------------------------
        // Set-up

        void configure() {
            // (16 bits: bit 15, IN_ORDER, came last, so older corpus entries keep their other features)
            int fb = d.consumeInt(0, 0xffff);
            int[] bits = {VirtioFeatures.F_VERSION_1, VirtioFeatures.NET_F_MRG_RXBUF, VirtioFeatures.RING_F_EVENT_IDX,
                VirtioFeatures.RING_F_INDIRECT_DESC, VirtioFeatures.NET_F_CSUM, VirtioFeatures.NET_F_GUEST_CSUM,
                VirtioFeatures.NET_F_HOST_TSO4, VirtioFeatures.NET_F_HOST_TSO6, VirtioFeatures.NET_F_HOST_UFO,
                VirtioFeatures.NET_F_HOST_USO, VirtioFeatures.NET_F_HOST_ECN, VirtioFeatures.NET_F_GUEST_TSO4,
                VirtioFeatures.NET_F_GUEST_TSO6, VirtioFeatures.NET_F_GUEST_UFO, VirtioFeatures.NET_F_GUEST_USO4,
                VirtioFeatures.F_IN_ORDER};
            for (int i = 0; i < bits.length; i++) {
                if ((fb & (1 << i)) != 0) {
                    features |= 1L << bits[i];
                }
            }
            mtu = MTUS[d.consumeInt(0, MTUS.length - 1)];
            size = 1 << d.consumeInt(0, 8);
            mask = size - 1;
            hdr = VirtioNetHdr.size(features);
            start = d.consumeInt(0, 0xffff);
            tableIdx = d.consumeInt(0, SPLITS.length - 1);
            tablesUsed[tableIdx] = true;
            uring = d.consumeBoolean() && TX_RING != null;
            callFd = d.consumeBoolean();
            // As QueuePairWorker's constructor and setFeatures do it.
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

        void writeGuest() {
            MemorySegment r = ram();
            BACKING.asSlice(0, GUARD).fill((byte) 0x5a);
            BACKING.asSlice(GUARD + RAM, GUARD).fill((byte) 0x5a);
            MemorySegment.copy(RING_PATTERN, 0, r, ValueLayout.JAVA_BYTE, 0, DATA_OFF);
            r.asSlice(DATA_OFF, TABLE_OFF - DATA_OFF).fill((byte) d.consumeInt(0, 255));
            r.asSlice(TABLE_OFF, RAM - TABLE_OFF).fill((byte) 0);
            // descriptor table: the first n from the input, the rest zero (empty buffers)
            MemorySegment desc = r.asSlice(DESC_OFF, VringDesc.tableSize(size));
            desc.fill((byte) 0);
            List<Integer> builtHeads = new ArrayList<>();
            if (d.consumeBoolean()) {
                // well-formed chains as a driver builds them, then a few hostile overwrites
                buildChains(r, desc, builtHeads);
                int k = d.consumeInt(0, 3);
                for (int i = 0; i < k; i++) {
                    putDesc(desc, (long) d.consumeInt(0, mask) * VringDesc.SIZE, size);
                }
            } else {
                int n = d.consumeInt(0, size);
                for (int i = 0; i < n; i++) {
                    putDesc(desc, (long) i * VringDesc.SIZE, size);
                }
                // indirect tables
                int t = d.consumeInt(0, TABLES);
                for (int j = 0; j < t; j++) {
                    long at = TABLE_OFF + (long) j * TABLE_SPAN + (d.consumeBoolean() ? d.consumeInt(0, 15) : 0);
                    int entries = d.consumeBoolean() ? d.consumeInt(1, 8) : d.consumeInt(1, TABLE_SPAN / VringDesc.SIZE - 1);
                    int given = Math.min(entries, d.consumeInt(0, entries));
                    for (int e = 0; e < given; e++) {
                        putDesc(r, at + (long) e * VringDesc.SIZE, entries);
                    }
                }
            }
            // avail ring: entries given by the input, else head = position (a chain per descriptor)
            MemorySegment avail = r.asSlice(AVAIL_OFF, VringAvail.sizeOf(size));
            int given = d.consumeInt(0, size);
            for (int k = 0; k < size; k++) {
                int head;
                if (k < given) {
                    head = d.consumeBoolean() ? d.consumeInt(0, mask) : d.consumeInt(0, 0xffff);
                } else {
                    head = builtHeads.isEmpty() ? k : builtHeads.get(k % builtHeads.size());
                }
                VringAvail.setRing(avail, (start + k) & mask, head);
            }
            VringAvail.setFlags(avail, d.consumeBoolean() ? VringAvail.F_NO_INTERRUPT : 0);
            VringAvail.setUsedEvent(avail, size, d.consumeInt(0, 0xffff));
            availIdx = d.consumeBoolean() ? d.consumeInt(0, 0xffff) : start + d.consumeInt(0, size);
            availIdx &= 0xffff;
            noteAvail();
            avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) availIdx);
            MemorySegment used = r.asSlice(USED_OFF, VringUsed.sizeOf(size));
            used.fill((byte) 0);
            used.set(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET, (short) start);
            // virtio-net headers at slot starts, then raw patches anywhere in the data area
            int h = d.consumeInt(0, 8);
            for (int k = 0; k < h; k++) {
                long at = DATA_OFF + (long) d.consumeInt(0, SLOTS - 1) * SLOT + (d.consumeBoolean() ? 0 : d.consumeInt(0, 64));
                r.set(ValueLayout.JAVA_BYTE, at + VirtioNetHdr.FLAGS_OFFSET, (byte) pick(new int[] {0,
                    VirtioNetHdr.FLAG_NEEDS_CSUM, VirtioNetHdr.FLAG_DATA_VALID, VirtioNetHdr.FLAG_RSC_INFO}, 255));
                r.set(ValueLayout.JAVA_BYTE, at + VirtioNetHdr.GSO_TYPE_OFFSET, (byte) pick(new int[] {
                    VirtioNetHdr.GSO_NONE, VirtioNetHdr.GSO_TCPV4, VirtioNetHdr.GSO_TCPV6, VirtioNetHdr.GSO_UDP,
                    VirtioNetHdr.GSO_UDP_L4, VirtioNetHdr.GSO_TCPV4 | VirtioNetHdr.GSO_ECN}, 255));
                VirtioNetHdr.hdrLen(r, at, d.consumeInt(0, 0xffff));
                VirtioNetHdr.gsoSize(r, at, d.consumeInt(0, 0xffff));
                VirtioNetHdr.csumStart(r, at, d.consumeInt(0, 0xffff));
                VirtioNetHdr.csumOffset(r, at, d.consumeInt(0, 0xffff));
                VirtioNetHdr.numBuffers(r, at, d.consumeInt(0, 0xffff));
            }
            int p = d.consumeInt(0, 4);
            for (int k = 0; k < p; k++) {
                long at = DATA_OFF + d.consumeInt(0, TABLE_OFF - DATA_OFF - 8);
                r.set(VringDesc.LE_LONG, at, d.consumeLong());
            }
        }

        /**
         * Chains of 1..4 buffers (direct, or through an indirect table when negotiated) in the data
         * area, device-readable for TX (with a virtio-net header: zeros, a valid offload header, or
         * fuzzed fields) and device-writable for RX, sized around the engines' limits.
         */
        void buildChains(MemorySegment r, MemorySegment desc, List<Integer> heads) {
            int chains = d.consumeInt(1, size);
            boolean indirectOk = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC);
            int minNeed = mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN + hdr;
            int gsoNeed = VirtioNetHdr.MAX_GSO_FRAME + hdr;
            int[] totals = isTx
                    ? new int[] {hdr + 60, hdr + VirtioNetHdr.ETH_HLEN, minNeed, hdr + 1514, gsoNeed, hdr + 32000, hdr + 9018}
                    : new int[] {SLOT, 1536, 4096, minNeed, gsoNeed, 256, hdr + 60, 1024};
            int nextDesc = 0;
            int tables = 0;
            long bump = DATA_OFF;
            for (int c = 0; c < chains; c++) {
                int parts = d.consumeInt(1, 4);
                boolean ind = indirectOk && tables < TABLES && d.consumeBoolean();
                if (!ind && nextDesc + parts > size || ind && nextDesc >= size) {
                    break;
                }
                int total = Math.max(parts, totals[d.consumeInt(0, totals.length - 1)] + d.consumeInt(-2, 2));
                int[] lens = new int[parts];
                int left = total;
                for (int p = 0; p < parts; p++) {
                    int rest = parts - p - 1;
                    lens[p] = p == parts - 1 ? left : (p == 0 && d.consumeBoolean() && left - hdr >= rest ? hdr
                            : Math.max(1, (left - rest) / (rest + 1)));
                    left -= lens[p];
                }
                long[] gpas = new long[parts];
                for (int p = 0; p < parts; p++) {
                    if (bump + lens[p] > TABLE_OFF) {
                        bump = DATA_OFF; // wrap: later chains may share bytes with earlier ones
                    }
                    gpas[p] = GPA + bump;
                    bump = (bump + lens[p] + 63) & ~63L;
                }
                int dir = isTx ? 0 : VringDesc.F_WRITE;
                int head = nextDesc++;
                MemorySegment table = desc;
                long base = 0;
                int first = head;
                if (ind) {
                    base = TABLE_OFF + (long) tables++ * TABLE_SPAN;
                    table = r;
                    first = 0;
                    VringDesc.put(desc, (long) head * VringDesc.SIZE, GPA + base, parts * VringDesc.SIZE,
                            VringDesc.F_INDIRECT, 0);
                } else {
                    nextDesc += parts - 1;
                }
                for (int p = 0; p < parts; p++) {
                    boolean more = p + 1 < parts;
                    VringDesc.put(table, base + (long) (first + p) * VringDesc.SIZE, gpas[p], lens[p],
                            dir | (more ? VringDesc.F_NEXT : 0), more ? first + p + 1 : 0);
                }
                if (isTx) {
                    writeHeader(r, gpas, lens, total);
                }
                heads.add(head);
            }
        }

        /** A TX chain's virtio-net header, scattered over its buffers like the frame. */
        void writeHeader(MemorySegment r, long[] gpas, int[] lens, int total) {
            byte[] h = new byte[VirtioNetHdr.SIZE];
            MemorySegment hs = MemorySegment.ofArray(h);
            switch (d.consumeInt(0, 2)) {
                case 0 -> {
                    return; // the data area's fill byte (zeros: no offload, a valid header)
                }
                case 1 -> {
                    int gso = VirtioNetHdr.GSO_NONE;
                    if (total - hdr > mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN) {
                        gso = VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_TSO4) ? VirtioNetHdr.GSO_TCPV4
                                : VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_TSO6) ? VirtioNetHdr.GSO_TCPV6
                                : VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_USO) ? VirtioNetHdr.GSO_UDP_L4
                                : VirtioNetHdr.GSO_UDP;
                    }
                    VirtioNetHdr.flags(hs, 0, VirtioNetHdr.FLAG_NEEDS_CSUM);
                    VirtioNetHdr.gsoType(hs, 0, gso);
                    VirtioNetHdr.hdrLen(hs, 0, 54);
                    VirtioNetHdr.gsoSize(hs, 0, gso == VirtioNetHdr.GSO_NONE ? 0 : 1448);
                    VirtioNetHdr.csumStart(hs, 0, 34);
                    VirtioNetHdr.csumOffset(hs, 0, 16);
                }
                default -> {
                    VirtioNetHdr.flags(hs, 0, d.consumeInt(0, 255));
                    VirtioNetHdr.gsoType(hs, 0, d.consumeInt(0, 255));
                    VirtioNetHdr.hdrLen(hs, 0, d.consumeInt(0, 0xffff));
                    VirtioNetHdr.gsoSize(hs, 0, d.consumeInt(0, 0xffff));
                    VirtioNetHdr.csumStart(hs, 0, d.consumeInt(0, 0xffff));
                    VirtioNetHdr.csumOffset(hs, 0, d.consumeInt(0, 0xffff));
                }
            }
            int p = 0;
            for (int k = 0; k < gpas.length && p < hdr; k++) {
                int c = Math.min(lens[k], hdr - p);
                MemorySegment.copy(h, p, r, ValueLayout.JAVA_BYTE, gpas[k] - GPA, c);
                p += c;
            }
        }

        int pick(int[] menu, int rawMax) {
            int k = d.consumeInt(0, menu.length);
            return k < menu.length ? menu[k] : d.consumeInt(0, rawMax);
        }

        void putDesc(MemorySegment table, long off, int limit) {
            int kind = d.consumeInt(0, 255);
            int flags = kind & (VringDesc.F_NEXT | VringDesc.F_WRITE | VringDesc.F_INDIRECT);
            if ((kind & 8) != 0) {
                flags |= d.consumeInt(0, 0xffff) & ~7;
            }
            int next = (kind & 0x10) != 0 ? d.consumeInt(0, 0xffff) : d.consumeInt(0, limit);
            long addr = switch (d.consumeInt(0, 7)) {
                case 0 -> GPA + DATA_OFF + (long) d.consumeInt(0, SLOTS - 1) * SLOT + d.consumeInt(0, 15);
                case 1 -> GPA + DATA_OFF + (long) d.consumeInt(0, SLOTS - 1) * SLOT;
                case 2 -> GPA + d.consumeInt(0, RAM - 1);
                case 3 -> GPA + d.consumeInt(0, DATA_OFF - 1);
                case 4 -> GPA + RAM - d.consumeInt(0, 4096);
                case 5 -> GPA + TABLE_OFF + (long) d.consumeInt(0, TABLES - 1) * TABLE_SPAN + d.consumeInt(0, 15);
                case 6 -> d.consumeLong();
                default -> GPA + (long) d.consumeInt(1, 3) * (RAM / 4) + d.consumeInt(-64, 64);
            };
            int len = switch (d.consumeInt(0, 7)) {
                case 0 -> d.consumeInt(0, 2048);
                case 1 -> hdr + d.consumeInt(-1, 1);
                case 2 -> edge();
                case 3 -> d.consumeInt(0, 0x20000);
                case 4 -> d.consumeInt();
                case 5 -> 0;
                case 6 -> d.consumeInt(0, 64) * VringDesc.SIZE;
                default -> SLOT;
            };
            VringDesc.put(table, off, addr, len, flags, next);
        }

        /** Lengths at the engines' edges (header + frame limits, RX window targets). */
        int edge() {
            int minNeed = mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN + hdr;
            int[] e = {hdr + VirtioNetHdr.ETH_HLEN, hdr + 60, minNeed, VirtioNetHdr.MAX_GSO_FRAME + hdr, 4096, SLOT,
                MAX_RX_FRAME, hdr};
            return Math.max(0, e[d.consumeInt(0, e.length - 1)] + d.consumeInt(-2, 2));
        }

        void makeFrames() {
            int n = d.consumeInt(0, 12);
            int seed = d.consumeInt();
            int minNeed = mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN + hdr;
            for (int i = 0; i < n; i++) {
                int len = switch (d.consumeInt(0, 3)) {
                    case 0 -> hdr + VirtioNetHdr.ETH_HLEN + d.consumeInt(0, 1518);
                    case 1 -> d.consumeInt(0, 64);
                    case 2 -> {
                        int[] e = {minNeed, hdr + VirtioNetHdr.MAX_GSO_FRAME, SLOT, 4096, hdr, MAX_RX_FRAME};
                        yield e[d.consumeInt(0, e.length - 1)] + d.consumeInt(-2, 2);
                    }
                    default -> d.consumeInt(0, MAX_RX_FRAME);
                };
                len = Math.max(0, Math.min(MAX_RX_FRAME, len));
                byte[] f = new byte[len];
                new Random(seed * 1_000_003L + i).nextBytes(f);
                frames.add(f);
            }
        }

        // ------------------------------------------------------------------------------------------
        // What QueuePairWorker does

        /** {@code startRing}: reset, size, features, memory, addresses, base, start. */
        void startRing(int usedStart, int base) {
            q.reset();
            q.setSize(size);
            q.setFeatures(features);
            q.setMemory(TABLE[tableIdx]);
            if (!q.setAddresses(MEM.userAddress(GPA + DESC_OFF), MEM.userAddress(GPA + AVAIL_OFF),
                    MEM.userAddress(GPA + USED_OFF))) {
                throw new AssertionError("rings inside memory refused: " + q.brokenMessage());
            }
            q.setBase(base);
            q.start();
            if (q.base() != usedStart) {
                throw new AssertionError("start did not resume at used.idx " + usedStart + ": " + q.base());
            }
            started = true;
            ring.setCallFd(callFd ? CALL_FD : -1);
            ring.setEnabled(enabled);
        }

        /** {@code stopRing} (GET_VRING_BASE). */
        int stopRing() {
            if (!started) {
                return q.base();
            }
            if (isTx) {
                tx.releasePending();
            } else {
                rx.releaseWindow();
            }
            int base = q.stop();
            started = false;
            ring.setCallFd(-1);
            return base;
        }

        boolean active() {
            return started && (isTx || enabled) && !q.isBroken();
        }

        /** One duty cycle of QueuePairWorker.doWork for this ring: process, or the idle path. */
        void cycle(int budget) {
            boolean on = active();
            int work = 0;
            if (isTx) {
                if (on && !tx.backpressured()) {
                    work = tx.process(budget, System.nanoTime());
                    observe();
                }
                if (work == 0 && on && !tx.backpressured()) {
                    tx.armNotify();
                }
            } else {
                if (on && !rx.needsBuffers()) {
                    work = rx.process(budget, System.nanoTime());
                    observe();
                }
                if (work == 0 && on && rx.needsBuffers()) {
                    rx.armNotify();
                }
            }
        }

        void observe() {
            maxTaken = Math.max(maxTaken, (q.base() - start) & 0xffff);
            pollUsed();
        }

        /** Reads the entries published since the last call, as the driver would. */
        void pollUsed() {
            MemorySegment ring = ram().asSlice(USED_OFF, VringUsed.sizeOf(size));
            int idx = Short.toUnsignedInt(ring.get(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET));
            int n = (idx - seenUsed) & 0xffff;
            if (n > size) {
                lostTrack = true;
            } else {
                for (int k = 0; k < n; k++) {
                    int slot = (seenUsed + k) & mask;
                    usedEntries.add(new int[] {VringUsed.elemId(ring, slot), VringUsed.elemLen(ring, slot)});
                }
            }
            seenUsed = idx;
        }

        void noteAvail() {
            int ahead = (availIdx - start) & 0xffff;
            if (ahead <= 0x8000) {
                maxAvail = Math.max(maxAvail, ahead);
            }
        }

        void op(int op) {
            int budget = BUDGETS[d.consumeInt(0, BUDGETS.length - 1)];
            switch (op) {
                case 0, 1 -> cycle(budget);
                case 2 -> publish((availIdx + d.consumeInt(1, size)) & 0xffff);
                case 3 -> publish(d.consumeInt(0, 0xffff));
                case 4 -> {
                    if (isTx) {
                        drainTx();
                        tx.writable(); // EPOLLOUT
                    } else {
                        sendFrames(d.consumeInt(1, 4));
                    }
                }
                case 5 -> {
                    if (!isTx) {
                        rx.kicked(); // the RX kick eventfd fired (or the worker polls)
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
                    // QueuePairWorker.setMemory: held chains go back, the queue re-translates its rings
                    if (isTx) {
                        tx.releasePending();
                    } else {
                        rx.releaseWindow();
                    }
                    tableIdx = d.consumeInt(0, SPLITS.length - 1);
                    tablesUsed[tableIdx] = true;
                    if (!q.setMemory(TABLE[tableIdx])) {
                        throw new AssertionError("a table covering the rings refused: " + q.brokenMessage());
                    }
                }
                case 8 -> setEnabled(!enabled, budget);
                case 9 -> {
                    // GET_VRING_BASE, then SET_VRING_ADDR/BASE/KICK with the base returned
                    if (started) {
                        int base = stopRing();
                        // (base == used.idx is checked at the end; an RX buffer over the used ring may have
                        // overwritten used.idx, and the start then resumes where the ring says)
                        int used = Short.toUnsignedInt(ram().get(VringDesc.LE_SHORT, USED_OFF + VringUsed.IDX_OFFSET));
                        startRing(used, base);
                    }
                }
                case 10 -> {
                    if (isTx) {
                        drainTx();
                    } else {
                        sendFrames(1);
                    }
                }
                default -> {
                    // the guest changes its notification wishes
                    guestWrite16(AVAIL_OFF + VringAvail.FLAGS_OFFSET, d.consumeBoolean() ? VringAvail.F_NO_INTERRUPT : 0);
                    guestWrite16(AVAIL_OFF + VringAvail.usedEventOffset(size), d.consumeInt(0, 0xffff));
                }
            }
        }

        /** QueuePair.onSetRingEnabled (with the TX flush before a disable). */
        void setEnabled(boolean on, int weight) {
            if (isTx) {
                if (!on && enabled && active()) {
                    int left = size;
                    while (left > 0 && !tx.backpressured()) {
                        int n = tx.process(Math.min(left, weight), System.nanoTime());
                        observe();
                        if (n == 0) {
                            break;
                        }
                        left -= n;
                    }
                }
                enabled = on;
                ring.setEnabled(on);
            } else {
                enabled = on;
                if (!on) {
                    rx.releaseWindow();
                }
                ring.setEnabled(on);
            }
        }

        void publish(int idx) {
            availIdx = idx;
            noteAvail();
            guestWrite16(AVAIL_OFF + VringAvail.IDX_OFFSET, idx);
        }

        /** RAM offsets the guest stored to during the run (a TX record may hold the old or the new bytes). */
        final List<Long> guestWrites = new ArrayList<>();

        /** A guest store: memory and snapshot both (it is not the device's write). */
        void guestWrite16(long ramOff, int v) {
            guestWrites.add(ramOff);
            ram().set(VringDesc.LE_SHORT, ramOff, (short) v);
            SNAPSEG.set(VringDesc.LE_SHORT, GUARD + ramOff, (short) v);
        }

        /** After the input's ops: what a running worker would do until idle. */
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
                if (w != f.length) {
                    throw new AssertionError("short seqpacket write " + w + " of " + f.length);
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

        // ------------------------------------------------------------------------------------------
        // Checks

        void check(int usedIdx, int base) {
            if (q.isBroken() && q.brokenReason() == VirtqError.MEMORY_FAULT) {
                throw new AssertionError("memory fault with memory that never shrinks: " + q.brokenMessage());
            }
            if (q.isBroken() && q.brokenMessage() == null) {
                throw new AssertionError("broken without a message");
            }
            int used = (usedIdx - start) & 0xffff;
            int taken = maxTaken;
            // reference walk of every chain taken (of those made available: more taken is checked below,
            // unless the device's own writes moved an index the guest alone should move)
            Walk[] walks = new Walk[Math.min(taken, maxAvail)];
            boolean selfModifying = false;
            boolean usedClobbered = false;
            List<long[]> allowed = new ArrayList<>();
            allowed.add(new long[] {GUARD + USED_OFF, GUARD + USED_OFF + VringUsed.sizeOf(size)});
            long descEnd = DESC_OFF + VringDesc.tableSize(size);
            long availEnd = AVAIL_OFF + VringAvail.sizeOf(size);
            long usedEnd = USED_OFF + VringUsed.sizeOf(size);
            java.util.Set<Integer> heads = new java.util.HashSet<>();
            for (int e = 0; e < walks.length; e++) {
                int head = headAt(e);
                Walk w = walks[e] = walk(head);
                if (w.valid && !w.tables.isEmpty()) {
                    count("indirect chain taken");
                }
                int ex = e;
                trace(() -> "exposure " + ex + " head " + head + ": " + w);
                for (int t = 0; t < w.tables.size(); t += 2) {
                    if (overlaps(w.tables.get(t), w.tables.get(t + 1), USED_OFF, usedEnd)) {
                        selfModifying = true; // the device's used-ring writes rewrite this chain
                    }
                }
                if (!isTx && w.valid && heads.add(head)) {
                    for (int k = 0; k < w.w.size(); k += 2) {
                        long a = w.w.get(k);
                        long b = a + w.w.get(k + 1);
                        allowed.add(new long[] {GUARD + a, GUARD + b});
                        if (overlaps(a, b, DESC_OFF, descEnd) || overlaps(a, b, AVAIL_OFF, availEnd)) {
                            selfModifying = true;
                        }
                        if (overlaps(a, b, USED_OFF, usedEnd)) {
                            usedClobbered = true;
                        }
                    }
                }
            }
            if (!isTx && !selfModifying) {
                java.util.Set<List<Long>> tables = new java.util.HashSet<>();
                for (Walk w : walks) {
                    for (int t = 0; t < w.tables.size(); t += 2) {
                        tables.add(List.of(w.tables.get(t), w.tables.get(t) + w.tables.get(t + 1)));
                    }
                }
                for (int e = 0; e < walks.length && !selfModifying && !tables.isEmpty(); e++) {
                    if (!walks[e].valid) {
                        continue;
                    }
                    for (int k = 0; k < walks[e].w.size() && !selfModifying; k += 2) {
                        long a = walks[e].w.get(k);
                        long b = a + walks[e].w.get(k + 1);
                        for (List<Long> tb : tables) {
                            if (overlaps(a, b, tb.get(0), tb.get(1))) {
                                selfModifying = true;
                            }
                        }
                    }
                }
            }
            if (!selfModifying && !usedClobbered) {
                // (an RX buffer over the avail ring lets frame bytes move avail.idx; one over the used
                // ring moves used.idx, where a restart resumes)
                if (taken > maxAvail) {
                    throw new AssertionError("took " + taken + " chains, " + maxAvail + " were made available");
                }
            }
            if (isTx || !selfModifying && !usedClobbered) {
                // (an RX buffer over the used ring may have overwritten used.idx)
                if (used != ((base - start) & 0xffff)) {
                    throw new AssertionError("completion not in order: stop reported base " + base + ", used.idx "
                            + usedIdx + " (start " + start + ")");
                }
                if (used > taken) {
                    throw new AssertionError("used.idx moved by " + used + ", only " + taken + " chains taken");
                }
            }
            if (!isTx && usedClobbered) {
                // A restart resumes at the used.idx a frame wrote: any avail slot's chain may be taken.
                for (int slot = 0; slot < size; slot++) {
                    Walk w = walk(Short.toUnsignedInt(SNAPSEG.get(VringDesc.LE_SHORT,
                            GUARD + AVAIL_OFF + VringAvail.ringOffset(slot))));
                    for (int k = 0; w.valid && k < w.w.size(); k += 2) {
                        allowed.add(new long[] {GUARD + w.w.get(k), GUARD + w.w.get(k) + w.w.get(k + 1)});
                    }
                }
            }
            // property 2: guest memory
            if (isTx || !selfModifying) {
                checkMemory(allowed);
            } else {
                checkMemory(List.of(new long[] {GUARD, GUARD + RAM}));
            }
            if (selfModifying) {
                count("selfModifying");
            }
            if (usedClobbered) {
                count("usedClobbered");
            }
            if (selfModifying || usedClobbered || lostTrack) {
                if (isTx) {
                    checkRecordShapes();
                }
                return;
            }
            // property 3: used ring
            if (usedEntries.size() != used) {
                throw new AssertionError("polled " + usedEntries.size() + " used entries, used.idx moved by " + used);
            }
            int[] ids = new int[used];
            int[] lens = new int[used];
            int[] exposure = new int[used];
            boolean[] claimed = new boolean[taken];
            for (int u = 0; u < used; u++) {
                ids[u] = usedEntries.get(u)[0];
                lens[u] = usedEntries.get(u)[1];
            }
            if (VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER)) {
                expandRuns(ids, lens, used, walks);
            }
            for (int u = 0; u < used; u++) {
                int id = ids[u];
                int len = lens[u];
                int at = u;
                trace(() -> "used " + at + ": id " + id + " len " + len);
                int match = -1;
                for (int e = 0; e < taken; e++) {
                    if (!claimed[e] && headAt(e) == ids[u]) {
                        match = e;
                        break;
                    }
                }
                if (match < 0) {
                    throw new AssertionError("used entry " + u + " id " + ids[u] + " is no head taken from the avail"
                            + " ring (or used more often than made available)");
                }
                claimed[match] = true;
                exposure[u] = match;
                Walk w = walks[match];
                if (!w.valid) {
                    throw new AssertionError("used entry " + u + " returns head " + ids[u]
                            + ", a chain that breaks the queue");
                }
                if (isTx && lens[u] != 0) {
                    throw new AssertionError("TX used length " + lens[u] + " for head " + ids[u]);
                }
                if (!isTx && Integer.toUnsignedLong(lens[u]) > w.wBytes) {
                    throw new AssertionError("RX used length " + Integer.toUnsignedLong(lens[u]) + " > writable "
                            + w.wBytes + " of head " + ids[u]);
                }
            }
            if (VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER)) {
                // IN_ORDER: the u-th used entry is the chain made available u-th
                for (int u = 0; u < used; u++) {
                    if (ids[u] != headAt(u)) {
                        throw new AssertionError("IN_ORDER: used entry " + u + " is head " + ids[u] + ", the chain"
                                + " made available there is head " + headAt(u));
                    }
                }
                count("in-order checked");
            }
            if (isTx) {
                checkRecords(walks);
            } else {
                checkRxFrames(used, lens, exposure, walks);
            }
        }

        /**
         * IN_ORDER: an entry naming a head made available after its own slot's is one element for a
         * run of chains, up to the first one with that head (where Linux's in-order driver ends it);
         * the entries behind it in the run are stale. Every chain of a run must be read-only and the
         * run's length 0 (the driver reports an elided buffer's whole length). The run is replaced
         * by the entries it stands for, each with length 0.
         */
        void expandRuns(int[] ids, int[] lens, int used, Walk[] walks) {
            for (int u = 0; u < used;) {
                int id = ids[u];
                int k = 0;
                while (u + k < used && headAt(u + k) != id) {
                    k++;
                }
                if (u + k == used) {
                    throw new AssertionError("IN_ORDER: used entry " + u + " names head " + id + ", made available at"
                            + " none of positions " + u + ".." + (used - 1));
                }
                if (k > 0) {
                    if (lens[u] != 0) {
                        throw new AssertionError("IN_ORDER: used entry " + u + " covers " + (k + 1) + " chains with"
                                + " length " + Integer.toUnsignedLong(lens[u]));
                    }
                    for (int j = 0; j <= k; j++) {
                        Walk w = u + j < walks.length ? walks[u + j] : null;
                        if (w == null || !w.valid || w.wBytes != 0) {
                            throw new AssertionError("IN_ORDER: used entry " + u + " covers chain " + (u + j)
                                    + " (head " + headAt(u + j) + "), which is not a valid read-only chain: " + w);
                        }
                    }
                    for (int j = 0; j <= k; j++) {
                        ids[u + j] = headAt(u + j);
                        lens[u + j] = 0;
                    }
                    count("in-order run of " + Math.min(k + 1, 4) + (k + 1 >= 4 ? "+" : ""));
                }
                u += k + 1;
            }
        }

        static boolean overlaps(long a, long b, long c, long e) {
            return a < e && c < b;
        }

        int headAt(int exposure) {
            return Short.toUnsignedInt(SNAPSEG.get(VringDesc.LE_SHORT,
                    GUARD + AVAIL_OFF + VringAvail.ringOffset((start + exposure) & mask)));
        }

        /** Memory may differ from the snapshot only inside {@code allowed} ([from, to) in BACKING). */
        void checkMemory(List<long[]> allowed) {
            long[][] a = allowed.toArray(new long[0][]);
            Arrays.sort(a, (x, y) -> Long.compare(x[0], y[0]));
            long pos = 0;
            for (long[] r : a) {
                if (r[0] > pos) {
                    diff(pos, r[0]);
                }
                pos = Math.max(pos, r[1]);
            }
            diff(pos, BACKING.byteSize());
        }

        void diff(long from, long to) {
            long m = MemorySegment.mismatch(SNAPSEG, from, to, BACKING, from, to);
            if (m >= 0) {
                long at = from + m;
                String where = at < GUARD ? "guard below RAM" : at >= GUARD + RAM ? "guard above RAM"
                        : "RAM offset 0x" + Long.toHexString(at - GUARD);
                throw new AssertionError((isTx ? "TX" : "RX") + " engine wrote guest memory it was not given: " + where
                        + " was 0x" + Integer.toHexString(SNAP[(int) at] & 0xff) + ", now 0x"
                        + Integer.toHexString(BACKING.get(ValueLayout.JAVA_BYTE, at) & 0xff));
            }
        }

        long maxTxFrame() {
            long plain = mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN;
            return VirtioFeatures.hostGso(features) ? Math.max(plain, VirtioNetHdr.MAX_GSO_FRAME) : plain;
        }

        void checkRecordShapes() {
            TxValidator v = new TxValidator(features, mtu);
            for (byte[] rec : records) {
                if (rec.length > hdr + maxTxFrame()) {
                    throw new AssertionError("TX record of " + rec.length + " bytes, limit " + (hdr + maxTxFrame()));
                }
                if (rec.length < hdr) {
                    throw new AssertionError("TX record of " + rec.length + " bytes, shorter than the header");
                }
                MemorySegment s = MemorySegment.ofArray(rec);
                DropReason why = v.check(s, 0, rec.length - hdr);
                if (why != null) {
                    throw new AssertionError("TX record the validator rejects (" + why + ")");
                }
            }
            if (records.size() != counters.get(Counter.TX_FRAMES)) {
                throw new AssertionError(records.size() + " TX records, TX_FRAMES " + counters.get(Counter.TX_FRAMES));
            }
        }

        /** Records equal the readable bytes of taken chains, in avail order (used-ring bytes may differ). */
        void checkRecords(Walk[] walks) {
            checkRecordShapes();
            int e = 0;
            for (int i = 0; i < records.size(); i++) {
                byte[] rec = records.get(i);
                while (e < walks.length && !(walks[e].valid && walks[e].w.isEmpty() && sameBytes(rec, walks[e]))) {
                    e++;
                }
                if (e == walks.length) {
                    throw new AssertionError("TX record " + i + " (" + rec.length + " bytes) is not the readable data"
                            + " of a chain taken after the previous record's");
                }
                count("tx record matched, pieces " + Math.min(walks[e].r.size() / 2, 3));
                e++;
            }
        }

        boolean sameBytes(byte[] rec, Walk w) {
            if (rec.length != w.rBytes) {
                return false;
            }
            byte[] want = new byte[rec.length];
            int p = 0;
            long usedEnd = USED_OFF + VringUsed.sizeOf(size);
            for (int k = 0; k < w.r.size(); k += 2) {
                long a = w.r.get(k);
                int len = (int) (long) w.r.get(k + 1);
                System.arraycopy(SNAP, (int) (GUARD + a), want, p, len);
                // the device writes the used ring meanwhile: those bytes may be anything
                long from = Math.max(a, USED_OFF);
                long to = Math.min(a + len, usedEnd);
                if (from < to) {
                    System.arraycopy(rec, (int) (p + from - a), want, (int) (p + from - a), (int) (to - from));
                }
                for (long g : guestWrites) {
                    for (long b = g; b < g + 2; b++) {
                        if (b >= a && b < a + len) {
                            want[(int) (p + b - a)] = rec[(int) (p + b - a)];
                        }
                    }
                }
                p += len;
            }
            return Arrays.equals(want, rec);
        }

        void checkRxFrames(int used, int[] lens, int[] exposure, Walk[] walks) {
            boolean mergeable = VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF);
            // Bytes inside more than one taken chain (the guest overlapped its buffers, or posted a
            // head twice) may hold a later frame: frames there are not compared.
            ranges.clear();
            for (Walk w : walks) {
                if (w.valid) {
                    ranges.addAll(w.w);
                }
            }
            int next = 0;
            int u = 0;
            while (u < used) {
                if (lens[u] == 0) {
                    u++; // an unusable chain returned empty
                    continue;
                }
                int k = 1;
                if (hdr == VirtioNetHdr.SIZE) {
                    // num_buffers: bytes 10..11 of the frame, which fills its buffers in order
                    long[] at = new long[2];
                    int lastEntry = u;
                    for (int b = 0; b < 2; b++) {
                        long skip = VirtioNetHdr.NUM_BUFFERS_OFFSET + b;
                        int j = u;
                        while (j < used && skip >= walks[exposure[j]].wBytes) {
                            skip -= walks[exposure[j]].wBytes;
                            j++;
                        }
                        if (j == used) {
                            return; // the header lies past the published entries: a frame shorter than it
                        }
                        at[b] = offsetIn(walks[exposure[j]], skip);
                        lastEntry = j;
                    }
                    if (!once(at[0], 1) || !once(at[1], 1)) {
                        return; // another chain overlaps the header: nothing below can be trusted
                    }
                    k = (BACKING.get(ValueLayout.JAVA_BYTE, GUARD + at[0]) & 0xff)
                            | (BACKING.get(ValueLayout.JAVA_BYTE, GUARD + at[1]) & 0xff) << 8;
                    if (lastEntry >= u + Math.max(k, 1)) {
                        // the frame's buffers are shorter than the header (a frame shorter than it,
                        // in small buffers): num_buffers went past the frame, into the window
                        return;
                    }
                    if (k < 1 || (!mergeable && k != 1)) {
                        throw new AssertionError("num_buffers " + k + " in used entry " + u
                                + (mergeable ? "" : " without MRG_RXBUF"));
                    }
                }
                if (u + k > used) {
                    throw new AssertionError("num_buffers " + k + " at used entry " + u + " but only " + (used - u)
                            + " entries published");
                }
                long total = 0;
                boolean comparable = true;
                for (int j = u; j < u + k; j++) {
                    Walk w = walks[exposure[j]];
                    if (lens[j] == 0) {
                        throw new AssertionError("frame at used entry " + u + " with num_buffers " + k
                                + " includes an empty entry " + j);
                    }
                    if (j < u + k - 1 && lens[j] != w.wBytes) {
                        throw new AssertionError("buffer " + (j - u) + " of a " + k + "-buffer frame filled with "
                                + lens[j] + " of " + w.wBytes + " bytes");
                    }
                    total += lens[j];
                    comparable &= coveredOnce(w, lens[j]);
                }
                if (total > MAX_RX_FRAME) {
                    throw new AssertionError("delivered a " + total + "-byte frame; none that long was sent");
                }
                if (!comparable) {
                    return;
                }
                byte[] got = new byte[(int) total];
                int p = 0;
                for (int j = u; j < u + k; j++) {
                    byte[] part = gather(walks[exposure[j]], 0, lens[j]);
                    System.arraycopy(part, 0, got, p, part.length);
                    p += part.length;
                }
                int found = -1;
                for (int f = next; f < sent.size(); f++) {
                    if (sameFrame(sent.get(f), got, k)) {
                        found = f;
                        break;
                    }
                }
                if (found < 0) {
                    throw new AssertionError("RX frame at used entry " + u + " (" + total + " bytes, " + k
                            + " buffers) is not a frame the host wrote, whole and in order (" + sent.size()
                            + " written, next candidate " + next + ")");
                }
                next = found + 1;
                count("rx frame compared, buffers " + Math.min(k, 3));
                u += k;
            }
        }

        /** RAM offset of byte {@code skip} of a chain's writable ranges. */
        static long offsetIn(Walk w, long skip) {
            for (int k = 0; k < w.w.size(); k += 2) {
                if (skip < w.w.get(k + 1)) {
                    return w.w.get(k) + skip;
                }
                skip -= w.w.get(k + 1);
            }
            throw new IllegalStateException("offset past the chain");
        }

        /** Writable ranges (offset, length) of every valid chain taken, once per exposure. */
        final List<Long> ranges = new ArrayList<>();

        /** Whether exactly one taken chain's range overlaps {@code [a, a+len)} (a piece of that chain's own range). */
        boolean once(long a, long len) {
            int n = 0;
            for (int k = 0; k < ranges.size(); k += 2) {
                long c = ranges.get(k);
                if (overlaps(a, a + len, c, c + ranges.get(k + 1)) && ++n > 1) {
                    return false;
                }
            }
            return n == 1;
        }

        boolean coveredOnce(Walk w, int len) {
            long left = len;
            for (int k = 0; k < w.w.size() && left > 0; k += 2) {
                long l = Math.min(left, w.w.get(k + 1));
                if (!once(w.w.get(k), l)) {
                    return false;
                }
                left -= l;
            }
            return true;
        }

        /** {@code got} is {@code want} with num_buffers set (12-byte header). */
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

        /** {@code len} bytes from {@code skip} into a chain's writable ranges, as memory holds them now. */
        byte[] gather(Walk w, long skip, int len) {
            byte[] out = new byte[len];
            int p = 0;
            for (int k = 0; k < w.w.size() && p < len; k += 2) {
                long a = w.w.get(k);
                long l = w.w.get(k + 1);
                if (skip >= l) {
                    skip -= l;
                    continue;
                }
                int c = (int) Math.min(l - skip, len - p);
                MemorySegment.copy(BACKING, ValueLayout.JAVA_BYTE, GUARD + a + skip, out, p, c);
                p += c;
                skip = 0;
            }
            return out;
        }

        // ------------------------------------------------------------------------------------------
        // Reference chain walker (virtio 1.x §2.7.5, as the device must apply it), on the snapshot

        static final class Walk {
            boolean valid;
            /** (ram offset, length) pairs. */
            final List<Long> r = new ArrayList<>();
            final List<Long> w = new ArrayList<>();
            final List<Long> tables = new ArrayList<>();
            long rBytes;
            long wBytes;

            @Override
            public String toString() {
                return (valid ? "valid" : "INVALID") + " r=" + r + " w=" + w + " tables=" + tables;
            }
        }

        final java.util.Map<Integer, Walk> walked = new java.util.HashMap<>();

        /** A chain is valid when it is under one of the memory tables the run used (memoized: the snapshot is fixed). */
        Walk walk(int head) {
            return walked.computeIfAbsent(head, this::walkUncached);
        }

        Walk walkUncached(int head) {
            Walk out = null;
            for (int t = 0; t < SPLITS.length; t++) {
                if (tablesUsed[t]) {
                    Walk w = walk(head, SPLITS[t]);
                    if (out == null || w.valid && !out.valid) {
                        out = w;
                    }
                }
            }
            return out;
        }

        Walk walk(int head, int regions) {
            Walk c = new Walk();
            if (head >= size) {
                return c;
            }
            boolean indirect = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC);
            long tableOff = GUARD + DESC_OFF;
            int limit = size;
            boolean inIndirect = false;
            boolean sawWritable = false;
            int rPieces = 0;
            int wPieces = 0;
            int i = head;
            int count = 0;
            while (true) {
                if (++count > limit) {
                    return c;
                }
                long off = tableOff + (long) i * VringDesc.SIZE;
                long addr = SNAPSEG.get(VringDesc.LE_LONG, off + VringDesc.ADDR_OFFSET);
                long len = Integer.toUnsignedLong(SNAPSEG.get(VringDesc.LE_INT, off + VringDesc.LEN_OFFSET));
                int flags = Short.toUnsignedInt(SNAPSEG.get(VringDesc.LE_SHORT, off + VringDesc.FLAGS_OFFSET));
                int next = Short.toUnsignedInt(SNAPSEG.get(VringDesc.LE_SHORT, off + VringDesc.NEXT_OFFSET));
                if ((flags & VringDesc.F_INDIRECT) != 0) {
                    if (!indirect || inIndirect || (flags & VringDesc.F_NEXT) != 0) {
                        return c;
                    }
                    if (len == 0 || len % VringDesc.SIZE != 0 || len / VringDesc.SIZE > Math.max(size, 1024)) {
                        return c;
                    }
                    long ro = addr - GPA;
                    long piece = RAM / regions;
                    if (ro < 0 || ro >= RAM || ro / piece != (ro + len - 1) / piece || ro + len > RAM) {
                        return c;
                    }
                    c.tables.add(ro);
                    c.tables.add(len);
                    tableOff = GUARD + ro;
                    limit = (int) (len / VringDesc.SIZE);
                    inIndirect = true;
                    i = 0;
                    count = 0;
                    continue;
                }
                boolean write = (flags & VringDesc.F_WRITE) != 0;
                if (write) {
                    sawWritable = true;
                } else if (sawWritable) {
                    return c;
                }
                if (len != 0) {
                    if (Long.compareUnsigned(addr + len - 1, addr) < 0) {
                        return c;
                    }
                    long ro = addr - GPA;
                    if (Long.compareUnsigned(ro, RAM) >= 0 || ro + len > RAM) {
                        return c;
                    }
                    long piece = RAM / regions;
                    int pieces = (int) ((ro + len - 1) / piece - ro / piece + 1);
                    if (write) {
                        wPieces += pieces;
                        c.w.add(ro);
                        c.w.add(len);
                        c.wBytes += len;
                    } else {
                        rPieces += pieces;
                        c.r.add(ro);
                        c.r.add(len);
                        c.rBytes += len;
                    }
                    if (wPieces > CHAIN_IOV || rPieces > CHAIN_IOV) {
                        return c;
                    }
                }
                if ((flags & VringDesc.F_NEXT) == 0) {
                    c.valid = true;
                    return c;
                }
                if (next >= limit) {
                    return c;
                }
                i = next;
            }
        }

        // ------------------------------------------------------------------------------------------
        // Property 5

        /**
         * The driver resets its ring and posts one well-formed chain; the ring is stopped and
         * started as QueuePairWorker does on SET_VRING_BASE/ADDR/KICK; the frame must go through.
         */
        void restartAndExchange(int oldBase) {
            drainSockets();
            records.clear();
            int base = (oldBase + 7) & 0xffff;
            MemorySegment r = ram();
            r.asSlice(0, DATA_OFF).fill((byte) 0);
            long bufGpa = GPA + DATA_OFF;
            int frameLen = hdr + 60;
            int bufLen = isTx ? frameLen : VirtioNetHdr.MAX_GSO_FRAME + hdr + mtu + 64;
            MemorySegment buf = r.asSlice(DATA_OFF, bufLen);
            buf.fill((byte) 0);
            byte[] frame = new byte[frameLen];
            for (int i = hdr; i < frameLen; i++) {
                frame[i] = (byte) (i * 7 + 1);
            }
            if (isTx) {
                MemorySegment.copy(frame, 0, buf, ValueLayout.JAVA_BYTE, 0, frameLen);
            }
            MemorySegment desc = r.asSlice(DESC_OFF, VringDesc.tableSize(size));
            VringDesc.put(desc, 0, bufGpa, bufLen, isTx ? 0 : VringDesc.F_WRITE, 0);
            MemorySegment avail = r.asSlice(AVAIL_OFF, VringAvail.sizeOf(size));
            VringAvail.setRing(avail, base & mask, 0);
            avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) (base + 1));
            r.set(VringDesc.LE_SHORT, USED_OFF + VringUsed.IDX_OFFSET, (short) base);
            stopRing();
            enabled = true;
            tableIdx = 0;
            startRing(base, base);
            if (!isTx) {
                MemorySegment.copy(frame, 0, IO, ValueLayout.JAVA_BYTE, 0, frameLen);
                if (Fds.write(SOCK[1], IO, frameLen) != frameLen) {
                    throw new AssertionError("could not write the clean frame");
                }
                rx.kicked();
            } else if (tx.backpressured()) {
                tx.writable();
            }
            for (int i = 0; i < 3; i++) {
                cycle(64);
            }
            if (q.isBroken()) {
                throw new AssertionError("a clean ring broke after the restart: " + q.brokenMessage());
            }
            MemorySegment used = r.asSlice(USED_OFF, VringUsed.sizeOf(size));
            int u = Short.toUnsignedInt(used.get(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET));
            if (u != ((base + 1) & 0xffff)) {
                throw new AssertionError("after the restart the clean chain was not used: used.idx " + u + ", base "
                        + base + (isTx ? ", tx pending/backpressured " + tx.backpressured() : ", rx needsBuffers "
                        + rx.needsBuffers()));
            }
            int id = VringUsed.elemId(used, base & mask);
            int len = VringUsed.elemLen(used, base & mask);
            if (id != 0) {
                throw new AssertionError("clean exchange returned head " + id);
            }
            if (isTx) {
                drainTx();
                if (records.size() != 1 || !Arrays.equals(records.get(0), frame) || len != 0) {
                    throw new AssertionError("clean TX frame: " + records.size() + " records, used len " + len);
                }
            } else {
                byte[] got = new byte[frameLen];
                MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, 0, got, 0, frameLen);
                if (len != frameLen || !sameFrame(frame, got, 1)) {
                    throw new AssertionError("clean RX frame: used len " + len + " of " + frameLen);
                }
            }
            stopRing();
            drainSockets();
        }

        static MemorySegment ram() {
            return MEM.ram();
        }

        static void drainSockets() {
            for (int fd : SOCK) {
                while (Fds.read(fd, IO, IO.byteSize()) != Fds.WOULD_BLOCK) {
                    // discard: the previous input's leftovers
                }
            }
        }
    }
}
