package io.jvhost.bench;

import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryRegion;
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
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Guest-physical translation with 1, 8 and 509 regions: {@code sameRegion} hits the last-hit
 * cache (a TX burst from one buffer pool), {@code anyRegion} spreads over all regions (binary
 * search). Must be 0 B/op and grow at most logarithmically with the region count.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class TranslateBench {
    static final long REGION = 64 * 1024;
    static final int N = 1024;

    @Param({"1", "8", "509"})
    int regions;

    Arena arena;
    GuestMemory mem;
    long[] same = new long[N];
    long[] any = new long[N];
    int i;

    @Setup(Level.Trial)
    public void setup() {
        arena = Arena.ofConfined();
        List<MemoryRegion> rs = new ArrayList<>();
        List<MemorySegment> segs = new ArrayList<>();
        for (int r = 0; r < regions; r++) {
            // gaps between regions, like a real guest's slots
            rs.add(new MemoryRegion(0x1_0000_0000L + r * 2 * REGION, REGION, 0x7f00_0000_0000L + r * 2 * REGION, 0, -1));
            segs.add(arena.allocate(REGION, 4096));
        }
        mem = GuestMemory.ofSegments(rs, segs);
        SplittableRandom rnd = new SplittableRandom(1);
        int hot = rnd.nextInt(regions);
        for (int k = 0; k < N; k++) {
            same[k] = 0x1_0000_0000L + hot * 2 * REGION + rnd.nextLong(REGION - 2048);
            any[k] = 0x1_0000_0000L + rnd.nextInt(regions) * 2 * REGION + rnd.nextLong(REGION - 2048);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public long sameRegion() {
        int k = i = (i + 1) & (N - 1);
        return mem.gpaToHost(same[k], 1514);
    }

    @Benchmark
    public long anyRegion() {
        int k = i = (i + 1) & (N - 1);
        return mem.gpaToHost(any[k], 1514);
    }
}
