package io.jvhost.bench;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.NetBufferLayout;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.nativ.Fds;
import io.jvhost.net.RxEngine;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.virtq.RingSetup;
import io.jvhost.virtq.Vring;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.concurrent.TimeUnit;

/**
 * The RX engine's held-GSO-frame path, without root: a 64 KiB frame arrives while the guest has
 * only a few mergeable buffers posted (a window short of 64 KiB but holding a full non-GSO frame),
 * so the engine reads it, keeps it (the part beyond the window in its overflow area) and asks for
 * buffers; the guest posts the rest; the engine copies the tail into them and delivers the frame
 * over all of them. Must be 0 B/op ({@code -prof gc}, and {@link EngineBench.ThreadAlloc}'s exact
 * {@code benchThreadBytes}).
 *
 * <p>The "tap" is an AF_UNIX SOCK_SEQPACKET pair (one record per frame, as a tap gives one frame per
 * read). One op: one 64 KiB write into the socket, two {@link RxEngine#process} calls, 43 buffers
 * reclaimed and re-posted. Every op checks that the first call held the frame (nothing published).
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class RxHeldBench {
    static final int RING = 256;
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_GUEST_TSO4);
    static final int FRAME = VirtioNetHdr.SIZE + VirtioNetHdr.MAX_GSO_FRAME;
    /** Buffers posted when the frame is read: ~12 KiB, more than a 1500-byte frame, less than 64 KiB. */
    static final int FIRST = 8;
    /** Buffers the whole frame takes. */
    static final int ALL = (FRAME + NetBufferLayout.rxMergeableLen() - 1) / NetBufferLayout.rxMergeableLen();

    int[] sock;
    Arena arena;
    MemorySegment frame;
    DriverMemory mem;
    DriverVirtqueue g;
    Vring d;
    RxEngine rx;
    final long[] freePages = new long[RING];
    int freeCount;
    final long[] pageOfHead = new long[RING];
    final long[] addrs = new long[1];
    final int[] lens = new int[1];
    /** Buffers posted and not yet returned. */
    int outstanding;

    @Setup(Level.Trial)
    public void setup() {
        sock = seqPacketPair();
        Fds.setNonBlocking(sock[0], true);
        arena = Arena.ofShared();
        frame = arena.allocate(FRAME, 64);
        for (int i = 0; i < FRAME; i++) {
            frame.set(ValueLayout.JAVA_BYTE, i, (byte) i);
        }
        frame.asSlice(0, VirtioNetHdr.SIZE).fill((byte) 0);
        mem = DriverMemory.allocate(4 << 20, DriverMemory.DEFAULT_GPA_BASE);
        g = new DriverVirtqueue(mem, RING, FEATURES, 0, 0);
        d = new Vring("bench rx-held");
        d.start(new RingSetup(RING, mem.userAddress(g.descGpa()), mem.userAddress(g.availGpa()),
                mem.userAddress(g.usedGpa()), 0, FEATURES, false, 0, -1, -1, -1, true), mem.guestMemory(1));
        rx = new RxEngine(0, d, arena, new QueueCounters(), new QueueLatency(), RING);
        rx.configure(sock[0], VirtioNetHdr.SIZE, true, true, 1500);
        for (int i = 0; i < RING; i++) {
            freePages[freeCount++] = mem.alloc(NetBufferLayout.rxMergeableBufferSize(), NetBufferLayout.PAGE_SIZE);
        }
        g.disableCallbacks();
    }

    private void postUpTo(int n) {
        boolean any = false;
        while (outstanding < n) {
            long page = freePages[--freeCount];
            NetBufferLayout.rxMergeable(page, addrs, lens);
            pageOfHead[g.add(addrs, lens, 0, 1, false)] = page;
            outstanding++;
            any = true;
        }
        if (any) {
            g.publish();
        }
    }

    @Benchmark
    public int rxHeld(EngineBench.ThreadAlloc alloc) {
        postUpTo(FIRST);
        if (Fds.write(sock[1], frame, FRAME) != FRAME) {
            throw new IllegalStateException("frame not written");
        }
        int n = rx.process(1, System.nanoTime());
        if (g.usedPending() != 0) {
            // Nothing may be published yet: the frame is held (a drop would show below: got != ALL).
            throw new IllegalStateException("the frame was not held");
        }
        postUpTo(ALL);
        n += rx.process(1, System.nanoTime());
        long u;
        int got = 0;
        while ((u = g.pollUsed()) >= 0) {
            freePages[freeCount++] = pageOfHead[(int) (u >>> 32)];
            outstanding--;
            got++;
        }
        if (got != ALL) {
            throw new IllegalStateException("frame delivered over " + got + " buffers, expected " + ALL);
        }
        return n;
    }

    @TearDown(Level.Trial)
    public void teardown() {
        if (sock != null) {
            Fds.closeQuietly(sock[0]);
            Fds.closeQuietly(sock[1]);
        }
        if (mem != null) {
            mem.close();
        }
        if (arena != null) {
            arena.close();
        }
    }

    private static final MethodHandle SOCKETPAIR = socketpairHandle();

    @SuppressWarnings("restricted")
    private static MethodHandle socketpairHandle() {
        Linker l = Linker.nativeLinker();
        return l.downcallHandle(l.defaultLookup().find("socketpair").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.ADDRESS));
    }

    /** AF_UNIX SOCK_SEQPACKET pair (close-on-exec): record boundaries kept, like a tap. */
    static int[] seqPacketPair() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment sv = a.allocate(8, 4);
            int r = (int) SOCKETPAIR.invokeExact(1 /* AF_UNIX */, 5 /* SOCK_SEQPACKET */ | 02000000 /* SOCK_CLOEXEC */, 0, sv);
            if (r != 0) {
                throw new IllegalStateException("socketpair(AF_UNIX, SOCK_SEQPACKET) failed");
            }
            return new int[] {sv.get(ValueLayout.JAVA_INT, 0), sv.get(ValueLayout.JAVA_INT, 4)};
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
