package io.jvhost.bench;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * Device-side cost of one chain: the driver's avail publish (a slot write + release of avail.idx,
 * so the ring never runs dry), the device's acquire of avail.idx, the walk of {@code descs}
 * descriptors (direct or through an indirect table) into iovecs, one used element, the release
 * of used.idx and the EVENT_IDX call decision. Must be 0 B/op under {@code -prof gc}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class VirtqBench {
    static final int SIZE = 256;

    @Param({"1", "4"})
    int descs;

    @Param({"false", "true"})
    boolean indirect;

    DriverMemory mem;
    SplitVirtqueue q;
    Chain chain;
    Arena arena;
    MemorySegment avail;
    int availIdx;
    int chains;

    @Setup(Level.Trial)
    public void setup() {
        mem = DriverMemory.allocate(4 << 20, DriverMemory.DEFAULT_GPA_BASE);
        arena = Arena.ofConfined();
        long descGpa = mem.alloc(VringDesc.tableSize(SIZE), 4096);
        long availGpa = mem.alloc(VringAvail.sizeOf(SIZE), 4096);
        long usedGpa = mem.alloc(VringUsed.sizeOf(SIZE), 4096);
        long bufs = mem.alloc(SIZE * 2048L, 4096);
        long tables = mem.alloc(SIZE * 16L * descs, 16);
        MemorySegment desc = mem.at(descGpa, VringDesc.tableSize(SIZE));
        avail = mem.at(availGpa, VringAvail.sizeOf(SIZE));
        chains = indirect ? SIZE : SIZE / descs;
        for (int c = 0; c < chains; c++) {
            for (int k = 0; k < descs; k++) {
                long addr = bufs + c * 2048L + k * 256L;
                int flags = (k + 1 < descs ? VringDesc.F_NEXT : 0) | (k == descs - 1 ? VringDesc.F_WRITE : 0);
                if (indirect) {
                    VringDesc.put(mem.at(tables, SIZE * 16L * descs), (c * (long) descs + k) * 16, addr, 256, flags, k + 1);
                } else {
                    int i = c * descs + k;
                    VringDesc.put(desc, i * 16L, addr, 256, flags, i + 1);
                }
            }
            if (indirect) {
                VringDesc.put(desc, c * 16L, tables + c * 16L * descs, 16 * descs, VringDesc.F_INDIRECT, 0);
            }
        }
        long features = (1L << VirtioFeatures.RING_F_EVENT_IDX) | (1L << VirtioFeatures.RING_F_INDIRECT_DESC);
        GuestMemory gm = mem.guestMemory(1);
        q = new SplitVirtqueue("bench");
        q.setSize(SIZE);
        q.setFeatures(features);
        q.setMemory(gm);
        q.setRings(desc, avail, mem.at(usedGpa, VringUsed.sizeOf(SIZE)));
        q.setBase(0);
        q.start();
        chain = new Chain(arena, 64);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
        mem.close();
    }

    @Benchmark
    public boolean walkAndPublish() {
        int i = availIdx;
        int head = indirect ? (i & (SIZE - 1)) : (i % chains) * descs;
        VringAvail.setRing(avail, i & (SIZE - 1), head);
        availIdx = (i + 1) & 0xffff;
        VringAvail.idxRelease(avail, availIdx);
        if (q.next(chain) != SplitVirtqueue.CHAIN) {
            throw new IllegalStateException(q.toString());
        }
        q.addUsed(chain.head(), (int) chain.writableBytes());
        q.publishUsed();
        return q.needsCall();
    }
}
