package io.jvhost.bench;

import io.jvhost.config.Configuration;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.demo.Netns;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.NetBufferLayout;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.net.RxEngine;
import io.jvhost.net.TapPort;
import io.jvhost.net.TxEngine;
import io.jvhost.net.TxValidator;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.virtq.RingSetup;
import io.jvhost.virtq.Vring;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * The real {@link TxEngine} and {@link RxEngine} against a real tap (created in a private network
 * namespace in {@link #setup}, removed in {@link #teardown}), with the Java driver's rings in the
 * same thread as the guest. Needs root.
 *
 * <ul>
 *   <li>{@link #tx}: the guest posts one frame (one descriptor, header inline); the TX engine
 *       validates it, {@code writev}s it into the tap (the kernel drops it early: the destination
 *       MAC is another host's), publishes the used entry; the guest reclaims it.</li>
 *   <li>{@link #rx}: a UDP socket inside the namespace sends one datagram to a neighbour with a
 *       static ARP entry behind the tap, so the kernel transmits one frame through the tap; the RX
 *       engine {@code readv}s it straight into the guest's mergeable buffer, writes num_buffers,
 *       publishes; the guest takes it and re-posts the buffer.</li>
 * </ul>
 * Both must be 0 B/op under {@code -prof gc}: that is the evidence that the hot paths do not
 * allocate (the syscalls, not Java, dominate the time). Because each op is a few syscalls, an
 * iteration has only ~10^5 ops, and the JVM-wide rate {@code -prof gc} reports also counts JMH's and
 * the profiler's own per-iteration allocations (a few hundred KB/s spread over few ops); so
 * {@link ThreadAlloc} also reports the exact bytes the benchmark thread allocated per iteration
 * ({@code :benchThreadBytes}), which must be 0. Guest callbacks are disabled (a polling guest), so
 * no call eventfd is written. The latency recorder uses the slow-batch threshold of
 * {@code Configuration.SLOW_BATCH_NANOS}: {@code -jvmArgsAppend -Djvhost.jfr.slowBatchNanos=0} makes
 * every batch "slow", which must still be 0 B/op without a recording.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class EngineBench {
    static final int RING = 256;
    static final int MTU = 1500;
    static final int ETH_IP_UDP = 14 + 20 + 8;
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);

    /** Ethernet frame length (without the virtio-net header). */
    @Param({"64", "1500"})
    int frameLen;

    /**
     * Dirty-page logging (live migration): {@code off} is the normal case (one null check per
     * frame / batch); {@code on} marks every RX buffer page and used-ring page in a log as a
     * migrating device does (atomic OR per page word).
     */
    @Param({"off", "on"})
    String dirtyLog;
    DirtyLog log;

    String ns;
    String tapName;
    TapPort tap;
    DriverMemory mem;
    Arena arena;
    DatagramChannel sender;
    ByteBuffer payload;

    DriverVirtqueue gTx;
    Vring dTx;
    TxEngine tx;
    long[] txAddrs = new long[1];
    int[] txLens = new int[1];

    DriverVirtqueue gRx;
    Vring dRx;
    RxEngine rx;
    long[] rxBufOfHead = new long[RING];
    long[] rxAddrs = new long[1];
    int[] rxLens = new int[1];
    long rxFrames;
    /** {@code -Djvhost.bench.rxRing=true}: the RX engine batches its reads through this ring. */
    io.jvhost.nativ.IoUring rxRing;

    /**
     * Bytes the benchmark thread allocated during one measured iteration (HotSpot's per-thread TLAB
     * accounting: exact, unlike the sampled JVM-wide rate).
     */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.EVENTS)
    public static class ThreadAlloc {
        private static final com.sun.management.ThreadMXBean BEAN =
                (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        public long benchThreadBytes;
        private long start;

        @Setup(Level.Iteration)
        public void begin() {
            benchThreadBytes = 0;
            start = BEAN.getCurrentThreadAllocatedBytes();
        }

        @TearDown(Level.Iteration)
        public void end() {
            benchThreadBytes = BEAN.getCurrentThreadAllocatedBytes() - start;
        }
    }

    @Setup(Level.Trial)
    public void setup() throws IOException {
        String sfx = Integer.toString(ThreadLocalRandom.current().nextInt(36 * 36 * 36, 36 * 36 * 36 * 36), 36);
        ns = "jvbns" + sfx;
        tapName = "jvbt" + sfx;
        run("ip", "netns", "add", ns);
        try {
            setupTapAndRings();
        } catch (RuntimeException | IOException | Error e) {
            teardown(); // JMH does not run @TearDown after a failed @Setup
            throw e;
        }
    }

    private void setupTapAndRings() throws IOException {
        // No IPv6 in the namespace: router solicitations and MLD reports would be extra RX frames.
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1");
        tap = TapPort.open(tapName, 1);
        tap.applyFeatures(FEATURES);
        run("ip", "link", "set", tapName, "netns", ns);
        run("ip", "-n", ns, "link", "set", tapName, "mtu", Integer.toString(MTU), "up");
        run("ip", "-n", ns, "addr", "add", "10.98.0.1/24", "dev", tapName);
        run("ip", "-n", ns, "neigh", "add", "10.98.0.2", "lladdr", "52:54:00:12:34:56", "dev", tapName,
                "nud", "permanent");
        sender = Netns.in(ns, () -> {
            DatagramChannel ch = DatagramChannel.open();
            ch.connect(new InetSocketAddress("10.98.0.2", 9));
            return ch;
        });
        payload = ByteBuffer.allocateDirect(frameLen - ETH_IP_UDP);

        arena = Arena.ofShared();
        mem = DriverMemory.allocate(8 << 20, DriverMemory.DEFAULT_GPA_BASE);
        if ("on".equals(dirtyLog)) {
            long pages = (mem.gpaBase() + mem.size()) / DirtyLog.PAGE_SIZE;
            log = DirtyLog.over(arena.allocate((pages / 64 + 1) * 8, 8));
        }
        GuestMemory table = mem.guestMemory(1);
        QueueCounters counters = new QueueCounters();
        QueueLatency latency = new QueueLatency("bench", 0, Configuration.SLOW_BATCH_NANOS.get());
        int fd = tap.fd(0);

        gTx = new DriverVirtqueue(mem, RING, FEATURES, 0, 0);
        dTx = deviceQueue("bench tx", gTx, table);
        tx = new TxEngine(0, dTx, arena, counters, latency);
        tx.configure(fd, VirtioNetHdr.SIZE, new TxValidator(FEATURES, MTU));
        long buf = mem.alloc(VirtioNetHdr.SIZE + frameLen, 64);
        MemorySegment b = mem.at(buf, VirtioNetHdr.SIZE + frameLen);
        b.fill((byte) 0);
        byte[] frame = new byte[frameLen];
        frame[0] = 0x02; // locally administered unicast MAC of nobody: the kernel drops it as PACKET_OTHERHOST
        frame[5] = (byte) 0x99;
        frame[6] = 0x52;
        frame[7] = 0x54;
        frame[11] = 0x56;
        frame[12] = 0x08; // IPv4
        MemorySegment.copy(frame, 0, b, ValueLayout.JAVA_BYTE, VirtioNetHdr.SIZE, frameLen);
        txAddrs[0] = buf;
        txLens[0] = VirtioNetHdr.SIZE + frameLen;
        gTx.disableCallbacks();

        gRx = new DriverVirtqueue(mem, RING, FEATURES, 0, 0);
        dRx = deviceQueue("bench rx", gRx, table);
        rx = new RxEngine(0, dRx, arena, counters, latency, RING);
        rx.configure(fd, VirtioNetHdr.SIZE, true, false, MTU);
        if (Boolean.getBoolean("jvhost.bench.rxRing")) {
            // RX with its batched io_uring reads (as a worker in io_uring mode runs it)
            rxRing = io.jvhost.nativ.IoUring.create(RxEngine.RING_BATCH);
            rx.useRing(rxRing);
        }
        for (int i = 0; i < RING; i++) {
            long page = mem.alloc(NetBufferLayout.rxMergeableBufferSize(), NetBufferLayout.PAGE_SIZE);
            NetBufferLayout.rxMergeable(page, rxAddrs, rxLens);
            rxBufOfHead[gRx.add(rxAddrs, rxLens, 0, 1, false)] = page;
        }
        gRx.publish();
        gRx.disableCallbacks();
    }

    private Vring deviceQueue(String name, DriverVirtqueue g, GuestMemory table) {
        Vring r = new Vring(name);
        r.start(new RingSetup(RING, mem.userAddress(g.descGpa()), mem.userAddress(g.availGpa()),
                mem.userAddress(g.usedGpa()), 0, FEATURES, log != null, g.usedGpa(), -1, -1, -1, true), table);
        r.setDirtyLog(log);
        return r;
    }

    /** Guest → tap: post one frame, one TX engine batch, reclaim. */
    @Benchmark
    public int tx(ThreadAlloc alloc) {
        gTx.add(txAddrs, txLens, 1, 0, false);
        gTx.publish();
        int n = tx.process(64, System.nanoTime());
        while (gTx.pollUsed() >= 0) {
            // reclaimed: the same buffer is posted again next time
        }
        return n;
    }

    /** Kernel → tap → guest: one datagram sent in the namespace, one RX engine batch, re-post. */
    @Benchmark
    public int rx(ThreadAlloc alloc) throws IOException {
        payload.clear();
        sender.write(payload);
        int n = 0;
        // The kernel transmits through the tap synchronously in write(); loop only in case it did not.
        for (int spin = 0; spin < 1_000_000 && n == 0; spin++) {
            n = rx.process(rxRing != null ? 64 : 1, System.nanoTime()); // with the ring: a batched read
        }
        long u;
        while ((u = gRx.pollUsed()) >= 0) {
            rxFrames++;
            long page = rxBufOfHead[(int) (u >>> 32)];
            NetBufferLayout.rxMergeable(page, rxAddrs, rxLens);
            rxBufOfHead[gRx.add(rxAddrs, rxLens, 0, 1, false)] = page;
        }
        gRx.publish();
        return n;
    }

    @TearDown(Level.Trial)
    public void teardown() {
        try {
            if (sender != null) {
                sender.close();
            }
        } catch (IOException ignored) {
            // best effort
        }
        if (rxRing != null) {
            rxRing.close();
        }
        if (tap != null) {
            tap.close();
        }
        quiet("ip", "netns", "del", ns);
        quiet("ip", "link", "del", tapName);
        if (mem != null) {
            mem.close();
        }
        if (arena != null) {
            arena.close();
        }
    }

    static String run(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new IllegalStateException(String.join(" ", cmd) + " failed: " + out);
            }
            return out;
        } catch (IOException e) {
            throw new IllegalStateException(String.join(" ", cmd), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    static void quiet(String... cmd) {
        try {
            run(cmd);
        } catch (RuntimeException ignored) {
            // cleanup: the thing may already be gone
        }
    }
}
