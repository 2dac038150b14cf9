package io.jvhost.vhostuser;

import io.jvhost.virtq.RingSetup;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.vhostuser.VhostUserMessage.*;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Coverage-guided fuzzing (Jazzer) of the back-end {@link Session}: arbitrary message sequences,
 * mostly well-formed enough to get deep (real memfds as guest RAM at made-up front-end addresses,
 * real eventfds, ring addresses inside and outside the regions), sent over a socketpair and handled
 * one at a time on this thread, against an in-memory device that checks the session's promises.
 *
 * <p>Properties: nothing escapes {@link Session#handleOne()} (it answers or ends the session); the
 * device is never handed a ring whose structures lie outside the memory table current at that time,
 * nor a table that no longer covers a running ring, nor a closed fd, nor a call for a ring that is
 * not running, nor a feature change under running rings; after the session closes no fd and no guest
 * memory mapping is left behind.
 *
 * <p>A normal test run replays the committed inputs under
 * {@code src/test/resources/io/jvhost/vhostuser/SessionFuzzTestInputs/messageSequences/}; with
 * {@code JAZZER_FUZZ=1} it fuzzes for a bounded time and findings land there.
 */
class SessionFuzzTest {
    private static final Logger QUIET = Logger.getLogger("io.jvhost.vhostuser");

    /** Guest RAM files: two 64 KiB, one 4 KiB (regions claiming more of it would point past its end). */
    private static final long[] FILE_SIZE = {64 * 1024, 64 * 1024, 4096};
    private static final int[] MEMFD = new int[FILE_SIZE.length];
    /** Made-up front-end virtual and guest-physical bases for each file. */
    private static final long[] UVA = {0x7f00_0000_0000L, 0x7f00_1000_0000L, 0x7f00_2000_0000L};
    private static final long[] GPA = {0x1_0000_0000L, 0x2_0000_0000L, 0x3_0000_0000L};
    private static final String MEMFD_NAME = "jvfuzz-ram";
    private static final int[] EVENTFD = new int[3];

    private static final int[] REQUESTS = {GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE,
        SET_LOG_BASE, SET_LOG_FD, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK,
        SET_VRING_CALL, SET_VRING_ERR, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM,
        SET_VRING_ENABLE, SEND_RARP, NET_SET_MTU, GET_CONFIG, SET_CONFIG, RESET_DEVICE, GET_MAX_MEM_SLOTS,
        ADD_MEM_REG, REM_MEM_REG, SET_BACKEND_REQ_FD, IOTLB_MSG, VRING_KICK, SET_STATUS, GET_STATUS};

    private static Level savedLevel;

    static {
        for (int i = 0; i < MEMFD.length; i++) {
            MEMFD[i] = Mman.memfdCreate(MEMFD_NAME);
            Mman.ftruncate(MEMFD[i], FILE_SIZE[i]);
        }
        for (int i = 0; i < EVENTFD.length; i++) {
            EVENTFD[i] = EventFd.create(0, true);
        }
    }

    @BeforeAll
    static void quiet() {
        savedLevel = QUIET.getLevel();
        QUIET.setLevel(Level.OFF); // every input is full of requests rejected on purpose
    }

    @AfterAll
    static void loud() {
        QUIET.setLevel(savedLevel);
    }

    @FuzzTest(maxDuration = "60s")
    void messageSequences(FuzzedDataProvider d) throws Exception {
        long fdsBefore = openFds();
        long mapsBefore = ramMappings();
        int pairs = d.consumeInt(1, 2);
        CheckingBackend backend = new CheckingBackend(pairs, d);
        FeatureSet offer = d.consumeBoolean() ? FeatureSet.all() : FeatureSet.all().without("protocol-features");
        int[] sp = UnixSocket.socketPair();
        Session session = new Session("fuzz", sp[0], backend, offer);
        VhostUserCodec front = new VhostUserCodec(sp[1]);
        try {
            boolean alive = true;
            if (d.consumeBoolean()) {
                alive = qemuLikeStart(session, front, backend);
            }
            backend.mayRefuse = true;
            int n = d.consumeInt(1, 48);
            for (int i = 0; i < n && alive && d.remainingBytes() > 0; i++) {
                sendOne(d, front, 2 * pairs);
                alive = session.handleOne();
                drainReplies(front);
            }
        } finally {
            session.close(); // closes sp[0]
            front.close();
            Fds.closeQuietly(sp[1]);
        }
        backend.checkClosed();
        long fdsAfter = openFds();
        if (fdsAfter != fdsBefore) {
            throw new AssertionError("fd leak: " + fdsBefore + " open before, " + fdsAfter + " after");
        }
        long mapsAfter = ramMappings();
        if (mapsAfter != mapsBefore) {
            throw new AssertionError("guest memory mappings: " + mapsBefore + " before, " + mapsAfter + " after");
        }
    }

    /** A valid opening (features, table of file 0, rings 0 and 1 running) so inputs start deep. */
    private static boolean qemuLikeStart(Session s, VhostUserCodec front, CheckingBackend b) throws Exception {
        MemorySegment p = front.txPayload();
        p.set(U64, 0, s.offeredFeatures());
        boolean ok = roundTrip(s, front, SET_FEATURES, U64_SIZE, null);
        p.set(U32, MEM_NREGIONS_OFFSET, 1);
        p.set(U32, MEM_PADDING_OFFSET, 0);
        putRegion(p, MEM_REGIONS_OFFSET, GPA[0], FILE_SIZE[0], UVA[0], 0);
        ok &= roundTrip(s, front, SET_MEM_TABLE, MEM_REGIONS_OFFSET + REGION_SIZE, new int[] {MEMFD[0]});
        for (int q = 0; q < 2 && ok; q++) {
            long base = UVA[0] + q * 0x4000L;
            p.set(U32, STATE_INDEX_OFFSET, q);
            p.set(U32, STATE_NUM_OFFSET, 64);
            ok &= roundTrip(s, front, SET_VRING_NUM, STATE_SIZE, null);
            p.set(U32, ADDR_INDEX_OFFSET, q);
            p.set(U32, ADDR_FLAGS_OFFSET, 0);
            p.set(U64, ADDR_DESC_OFFSET, base);
            p.set(U64, ADDR_AVAIL_OFFSET, base + 0x1000);
            p.set(U64, ADDR_USED_OFFSET, base + 0x2000);
            p.set(U64, ADDR_LOG_OFFSET, 0);
            ok &= roundTrip(s, front, SET_VRING_ADDR, ADDR_SIZE, null);
            p.set(U64, 0, q);
            ok &= roundTrip(s, front, SET_VRING_KICK, U64_SIZE, new int[] {EVENTFD[0]});
            p.set(U64, 0, q);
            ok &= roundTrip(s, front, SET_VRING_CALL, U64_SIZE, new int[] {EVENTFD[1]});
        }
        if (ok && b.runningCount() != 2) {
            throw new AssertionError("the valid opening did not start both rings");
        }
        return ok;
    }

    private static boolean roundTrip(Session s, VhostUserCodec front, int req, int size, int[] fds) throws Exception {
        front.send(req, VERSION, size, fds);
        boolean alive = s.handleOne();
        drainReplies(front);
        return alive;
    }

    private static void sendOne(FuzzedDataProvider d, VhostUserCodec front, int rings) throws Exception {
        int req = d.consumeInt(0, 15) == 0 ? d.consumeInt() : d.pickValue(REQUESTS);
        int flags = switch (d.consumeInt(0, 7)) {
            case 0 -> d.consumeInt();
            case 1, 2, 3 -> VERSION | FLAG_NEED_REPLY;
            default -> VERSION;
        };
        MemorySegment p = front.txPayload();
        p.fill((byte) 0);
        int size;
        int[] fds = null;
        switch (req) {
            case SET_FEATURES, SET_PROTOCOL_FEATURES, NET_SET_MTU, SEND_RARP, SET_LOG_BASE, SET_STATUS -> {
                p.set(U64, 0, switch (d.consumeInt(0, 3)) {
                    case 0 -> d.consumeLong();
                    case 1 -> d.consumeLong(0, 0xffff);
                    default -> VirtioFeatures.SUPPORTED & d.consumeLong();
                });
                size = U64_SIZE;
            }
            case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> {
                long u = d.consumeInt(0, rings) | (d.consumeInt(0, 3) == 0 ? VRING_NOFD_MASK : 0);
                if (d.consumeInt(0, 15) == 0) {
                    u = d.consumeLong();
                }
                p.set(U64, 0, u);
                size = U64_SIZE;
                if ((u & VRING_NOFD_MASK) == 0) {
                    fds = new int[] {EVENTFD[d.consumeInt(0, EVENTFD.length - 1)]};
                }
            }
            case SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE, VRING_KICK -> {
                p.set(U32, STATE_INDEX_OFFSET, d.consumeInt(0, 7) == 0 ? d.consumeInt() : d.consumeInt(0, rings));
                p.set(U32, STATE_NUM_OFFSET, switch (d.consumeInt(0, 3)) {
                    case 0 -> d.consumeInt();
                    case 1 -> d.consumeInt(0, 2);
                    default -> 1 << d.consumeInt(0, 16);
                });
                size = STATE_SIZE;
            }
            case SET_VRING_ADDR -> {
                p.set(U32, ADDR_INDEX_OFFSET, d.consumeInt(0, rings));
                p.set(U32, ADDR_FLAGS_OFFSET, d.consumeInt(0, 7) == 0 ? d.consumeInt() : 0);
                p.set(U64, ADDR_DESC_OFFSET, ringAddress(d, VringDesc.ALIGN));
                p.set(U64, ADDR_USED_OFFSET, ringAddress(d, VringUsed.ALIGN));
                p.set(U64, ADDR_AVAIL_OFFSET, ringAddress(d, VringAvail.ALIGN));
                p.set(U64, ADDR_LOG_OFFSET, d.consumeLong());
                size = ADDR_SIZE;
            }
            case SET_MEM_TABLE -> {
                int n = d.consumeInt(0, 3);
                p.set(U32, MEM_NREGIONS_OFFSET, d.consumeInt(0, 15) == 0 ? d.consumeInt() : n);
                fds = new int[n];
                for (int i = 0; i < n; i++) {
                    fds[i] = region(d, p, MEM_REGIONS_OFFSET + i * REGION_SIZE);
                }
                size = d.consumeInt(0, 15) == 0 ? MEM_REGIONS_OFFSET + MEM_MAX_REGIONS * REGION_SIZE
                        : MEM_REGIONS_OFFSET + n * REGION_SIZE;
            }
            case ADD_MEM_REG, REM_MEM_REG -> {
                int fd = region(d, p, SINGLE_REGION_OFFSET);
                fds = req == ADD_MEM_REG || d.consumeInt(0, 3) == 0 ? new int[] {fd} : null;
                size = SINGLE_REGION_SIZE;
            }
            case GET_CONFIG, SET_CONFIG -> {
                int len = d.consumeInt(0, 3) == 0 ? d.consumeInt(0, CONFIG_MAX_SIZE) : d.consumeInt(0, 12);
                p.set(U32, CONFIG_OFFSET_OFFSET, d.consumeInt(0, 3) == 0 ? d.consumeInt() : d.consumeInt(0, 16));
                p.set(U32, CONFIG_SIZE_OFFSET, d.consumeInt(0, 7) == 0 ? d.consumeInt() : len);
                p.set(U32, CONFIG_FLAGS_OFFSET, d.consumeInt(0, 2));
                byte[] data = d.consumeBytes(len);
                MemorySegment.copy(MemorySegment.ofArray(data), 0, p, CONFIG_PAYLOAD_OFFSET, data.length);
                size = CONFIG_PAYLOAD_OFFSET + len;
            }
            default -> {
                byte[] data = d.consumeBytes(d.consumeInt(0, 16));
                MemorySegment.copy(MemorySegment.ofArray(data), 0, p, 0, data.length);
                size = data.length;
            }
        }
        // Sometimes lie about the payload size (never with a short body: the session would wait its
        // 5 s for the rest), sometimes attach other fds.
        switch (d.consumeInt(0, 15)) {
            case 0 -> size = d.consumeInt(0, MAX_PAYLOAD);
            case 1 -> {
                MemorySegment b = front.txBuffer();
                b.set(U32, REQUEST_OFFSET, req);
                b.set(U32, FLAGS_OFFSET, flags);
                b.set(U32, SIZE_OFFSET, d.consumeInt(MAX_PAYLOAD + 1, Integer.MAX_VALUE));
                front.sendRaw(HEADER_SIZE, null);
                return;
            }
            case 2 -> {
                fds = new int[d.consumeInt(0, MAX_FDS)];
                for (int i = 0; i < fds.length; i++) {
                    fds[i] = d.consumeBoolean() ? EVENTFD[d.consumeInt(0, EVENTFD.length - 1)]
                            : MEMFD[d.consumeInt(0, MEMFD.length - 1)];
                }
            }
            default -> {
            }
        }
        front.send(req, flags, size, fds);
    }

    /** A ring address: mostly inside one of the files' front-end ranges and aligned, sometimes anything. */
    private static long ringAddress(FuzzedDataProvider d, int align) {
        return switch (d.consumeInt(0, 7)) {
            case 0 -> d.consumeLong();
            case 1 -> UVA[d.consumeInt(0, UVA.length - 1)] + d.consumeInt(0, (int) FILE_SIZE[0]);
            default -> {
                int f = d.consumeInt(0, UVA.length - 1);
                yield UVA[f] + (d.consumeLong(0, FILE_SIZE[f]) & -align);
            }
        };
    }

    /** Writes one region (mostly describing a real file consistently) at {@code at}; returns its fd. */
    private static int region(FuzzedDataProvider d, MemorySegment p, long at) {
        int f = d.consumeInt(0, MEMFD.length - 1);
        long off = switch (d.consumeInt(0, 3)) {
            case 0 -> d.consumeLong(0, FILE_SIZE[f] + 4096);
            case 1 -> 4096;
            default -> 0;
        };
        long size = switch (d.consumeInt(0, 3)) {
            case 0 -> d.consumeLong();
            case 1 -> d.consumeLong(1, 2 * FILE_SIZE[f]);
            default -> FILE_SIZE[f] - off;
        };
        long gpa = d.consumeInt(0, 7) == 0 ? d.consumeLong() : GPA[d.consumeInt(0, GPA.length - 1)] + off;
        long uva = d.consumeInt(0, 7) == 0 ? d.consumeLong() : UVA[f] + off;
        putRegion(p, at, gpa, size, uva, off);
        return MEMFD[f];
    }

    private static void putRegion(MemorySegment p, long at, long gpa, long size, long uva, long off) {
        p.set(U64, at + REGION_GPA_OFFSET, gpa);
        p.set(U64, at + REGION_SIZE_OFFSET, size);
        p.set(U64, at + REGION_UADDR_OFFSET, uva);
        p.set(U64, at + REGION_MMAP_OFFSET_OFFSET, off);
    }

    /** Reads whatever the session answered (it never sends fds); the session end shows as EOF only after close. */
    private static void drainReplies(VhostUserCodec front) throws VhostUserCodec.StreamException {
        while (Poll.poll(front.fd(), Poll.POLLIN, 0) != 0) {
            if (front.read(1000) == VhostUserCodec.ReadResult.EOF) {
                return;
            }
            if (front.fdCount() != 0) {
                throw new AssertionError("the back-end sent fds with " + requestName(front.request()));
            }
        }
    }

    private static long openFds() throws IOException {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        }
    }

    private static long ramMappings() throws IOException {
        try (Stream<String> s = Files.lines(Path.of("/proc/self/maps"))) {
            return s.filter(l -> l.contains(MEMFD_NAME)).count();
        }
    }

    private static boolean fdOpen(int fd) {
        return fd < 0 || Files.exists(Path.of("/proc/self/fd/" + fd));
    }

    /**
     * The device: keeps what the session told it and throws {@link AssertionError} (which the session
     * does not catch) when a promise of {@link DeviceBackend}'s contract is broken. Refuses some calls
     * and consumes some descriptors as the fuzzer decides.
     */
    private static final class CheckingBackend implements DeviceBackend {
        private final int pairs;
        private final FuzzedDataProvider d;
        private final Map<Integer, StartedRing> running = new HashMap<>();
        private GuestMemory memory;
        private long features;
        /** Off during the valid opening, which must succeed. */
        boolean mayRefuse;

        CheckingBackend(int pairs, FuzzedDataProvider d) {
            this.pairs = pairs;
            this.d = d;
        }

        int runningCount() {
            return running.size();
        }

        private boolean refuse() {
            return mayRefuse && d.remainingBytes() > 0 && d.consumeInt(0, 15) == 0;
        }

        private static boolean covers(GuestMemory m, StartedRing r) {
            return m != null && m.uvaToHost(r.descAddr(), VringDesc.tableSize(r.size())) != GuestMemory.NO_ADDR
                    && m.uvaToHost(r.availAddr(), VringAvail.sizeOf(r.size())) != GuestMemory.NO_ADDR
                    && m.uvaToHost(r.usedAddr(), VringUsed.sizeOf(r.size())) != GuestMemory.NO_ADDR;
        }

        private void requireRunning(String what, int q) {
            if (!running.containsKey(q)) {
                throw new AssertionError(what + " for ring " + q + ", which is not running");
            }
        }

        private static void requireOpen(String what, int fd) {
            if (!fdOpen(fd)) {
                throw new AssertionError(what + " fd " + fd + " is not open");
            }
        }

        void checkClosed() {
            if (!running.isEmpty() || memory != null) {
                throw new AssertionError("session closed without resetting the device: rings " + running.keySet());
            }
        }

        @Override
        public long features() {
            return VirtioFeatures.SUPPORTED;
        }

        @Override
        public int maxQueuePairs() {
            return pairs;
        }

        @Override
        public void onFeaturesSet(long f) {
            if ((f & ~VirtioFeatures.SUPPORTED) != 0) {
                throw new AssertionError("features not offered: 0x" + Long.toHexString(f));
            }
            if (f != features && !running.isEmpty()) {
                throw new AssertionError("features changed under running rings " + running.keySet());
            }
            if (refuse()) {
                throw new IllegalArgumentException("fuzz: features refused");
            }
            features = f;
        }

        @Override
        public void onMemoryTable(GuestMemory m) {
            if (m == null) {
                throw new AssertionError("null memory table");
            }
            for (StartedRing r : running.values()) {
                if (!covers(m, r)) {
                    throw new AssertionError("new memory table does not cover running ring " + r.queueIndex());
                }
            }
            if (refuse()) {
                throw new IllegalArgumentException("fuzz: table refused");
            }
            memory = m;
        }

        @Override
        public void startRing(int queueIndex, RingSetup setup) {
        StartedRing r = new StartedRing(queueIndex, setup, memory);
            int q = r.queueIndex();
            if (q < 0 || q >= 2 * pairs || running.containsKey(q)) {
                throw new AssertionError("start of ring " + q + " (running " + running.keySet() + ")");
            }
            if (r.memory() != memory || !covers(memory, r)) {
                throw new AssertionError("ring " + q + " started outside the current memory table: " + r);
            }
            if (Integer.bitCount(r.size()) != 1 || r.size() > io.jvhost.virtq.RingLayout.MAX_SIZE || r.baseIndex() < 0
                    || r.baseIndex() > 0xffff || r.features() != features) {
                throw new AssertionError("ring " + q + " started with " + r);
            }
            requireOpen("kick", r.kickFd());
            requireOpen("call", r.callFd());
            requireOpen("err", r.errFd());
            if (refuse()) {
                throw new IllegalArgumentException("fuzz: start refused");
            }
            running.put(q, r);
        }

        @Override
        public int stopRing(int q) {
            requireRunning("stop", q);
            StartedRing r = running.remove(q);
            int consumed = d.remainingBytes() > 0 ? d.consumeInt(0, 300) : 0;
            return (r.baseIndex() + consumed) & 0xffff;
        }

        @Override
        public void setRingEnabled(int q, boolean enabled) {
            requireRunning("enable", q);
        }

        @Override
        public void setCallFd(int q, int fd) {
            requireRunning("call fd", q);
            requireOpen("call", fd);
            if (refuse()) {
                throw new IllegalArgumentException("fuzz: call fd refused");
            }
        }

        @Override
        public void setErrFd(int q, int fd) {
            requireRunning("err fd", q);
            requireOpen("err", fd);
        }

        @Override
        public boolean sendRarp(byte[] mac) {
            return !refuse();
        }

        @Override
        public boolean setMtu(int mtu) {
            return !refuse();
        }

        @Override
        public VirtioNetConfig config() {
            return new VirtioNetConfig(new byte[] {0x52, 0x54, 0, 1, 2, 3}, VirtioNetConfig.STATUS_LINK_UP, pairs, 1500);
        }

        @Override
        public boolean setMac(byte[] mac) {
            return !refuse();
        }

        @Override
        public void reset() {
            running.clear();
            memory = null;
            features = 0;
        }

        @Override
        public void close() {
        }
    }
}
