package io.jvhost.bench;

import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.DeviceQueue;
import io.jvhost.virtq.PackedDesc;
import io.jvhost.virtq.PackedEvent;
import io.jvhost.virtq.PackedVirtqueue;
import io.jvhost.virtq.RingJournal;
import io.jvhost.virtq.RingLayout;
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
 * {@link VirtqBench} for packed rings: the driver makes one chain of {@code descs} descriptors
 * available (descriptors after the head, then the head's flags with release), the device takes it
 * (acquire of the head's flags, the walk into iovecs), writes its used descriptor, publishes it
 * (release of the flags) and makes the EVENT_IDX call decision. {@code journal=on} adds the
 * {@link RingJournal} a CLI-started jvhost keeps (two 8-byte stores per used descriptor into a
 * file mapping). Must be 0 B/op under {@code -prof gc}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class PackedVirtqBench {
    static final int SIZE = 256;

    @Param({"1", "4"})
    int descs;

    @Param({"off", "on"})
    String journal;

    DriverMemory mem;
    PackedVirtqueue q;
    Chain chain;
    Arena arena;
    MemorySegment desc;
    long bufs;
    int availIdx;
    boolean availWrap = true;
    int nextId;

    @Setup(Level.Trial)
    public void setup() throws Exception {
        mem = DriverMemory.allocate(4 << 20, DriverMemory.DEFAULT_GPA_BASE);
        arena = Arena.ofConfined();
        long bytes = RingLayout.PACKED.descBytes(SIZE);
        long descGpa = mem.alloc(bytes, 4096);
        long driverGpa = mem.alloc(PackedEvent.SIZE, 64);
        long deviceGpa = mem.alloc(PackedEvent.SIZE, 64);
        bufs = mem.alloc(SIZE * 2048L, 4096);
        desc = mem.at(descGpa, bytes);
        GuestMemory gm = mem.guestMemory(1);
        q = new PackedVirtqueue("bench");
        q.setSize(SIZE);
        q.setFeatures(1L << VirtioFeatures.RING_F_EVENT_IDX);
        q.setMemory(gm);
        q.setRings(desc, mem.at(driverGpa, PackedEvent.SIZE), mem.at(deviceGpa, PackedEvent.SIZE));
        if (journal.equals("on")) {
            java.nio.file.Path f = java.nio.file.Files.createTempFile("jvhost-bench-", ".rings");
            f.toFile().deleteOnExit();
            q.setJournal(RingJournal.open(f, 1).slot(0));
        }
        q.setBase(PackedEvent.offWrap(0, true));
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
        int head = availIdx;
        boolean headWrap = availWrap;
        int slot = head;
        boolean wrap = headWrap;
        int id = nextId;
        nextId = id + 1 == SIZE ? 0 : id + 1;
        for (int k = 0; k < descs; k++) {
            long off = PackedDesc.offset(slot);
            PackedDesc.put(desc, off, bufs + id * 2048L + k * 256L, 256, id);
            int flags = (k + 1 < descs ? PackedDesc.F_NEXT : 0) | (k == descs - 1 ? PackedDesc.F_WRITE : 0)
                    | PackedDesc.availFlags(wrap);
            if (k > 0) {
                PackedDesc.flagsRelease(desc, off, flags); // the head's flags last, below
            }
            if (++slot == SIZE) {
                slot = 0;
                wrap = !wrap;
            }
        }
        PackedDesc.flagsRelease(desc, PackedDesc.offset(head), (descs > 1 ? PackedDesc.F_NEXT : 0)
                | (descs == 1 ? PackedDesc.F_WRITE : 0) | PackedDesc.availFlags(headWrap));
        availIdx = slot;
        availWrap = wrap;
        if (q.next(chain) != DeviceQueue.CHAIN) {
            throw new IllegalStateException(q.toString());
        }
        q.addUsed(chain.head(), (int) chain.writableBytes());
        q.publishUsed();
        return q.needsCall();
    }
}
