package io.jvhost.virtq;

import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** A ring whose descriptors tests write by hand (a hostile driver), with the device attached. */
final class RawRing implements AutoCloseable {
    final DriverMemory mem;
    final int size;
    final long descGpa;
    final long availGpa;
    final long usedGpa;
    final MemorySegment desc;
    final MemorySegment avail;
    final MemorySegment used;
    /** Free space for buffers and indirect tables. */
    final long dataGpa;
    final GuestMemory guest;
    final SplitVirtqueue q;
    final Chain chain;
    private final Arena arena = Arena.ofConfined();
    int availIdx;

    RawRing(int size, long features, int regions, int iovCapacity) {
        this(size, features, regions, iovCapacity, 1 << 20, 0);
    }

    RawRing(int size, long features, int regions, int iovCapacity, long ramSize, int start) {
        this.mem = DriverMemory.allocate(ramSize, DriverMemory.DEFAULT_GPA_BASE);
        this.size = size;
        this.descGpa = mem.alloc(VringDesc.tableSize(size), 4096);
        this.availGpa = mem.alloc(VringAvail.sizeOf(size), 4096);
        this.usedGpa = mem.alloc(VringUsed.sizeOf(size), 4096);
        this.desc = mem.at(descGpa, VringDesc.tableSize(size));
        this.avail = mem.at(availGpa, VringAvail.sizeOf(size));
        this.used = mem.at(usedGpa, VringUsed.sizeOf(size));
        this.dataGpa = mem.alloc(4096, 4096);
        this.guest = mem.guestMemory(regions);
        this.q = new SplitVirtqueue("raw");
        q.setSize(size);
        q.setFeatures(features);
        q.setMemory(guest);
        q.setRings(desc, avail, used);
        availIdx = start & 0xffff;
        avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) availIdx);
        used.set(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET, (short) availIdx);
        q.setBase(availIdx);
        q.start();
        this.chain = new Chain(arena, iovCapacity);
    }

    void desc(int i, long addr, int len, int flags, int next) {
        VringDesc.put(desc, (long) i * VringDesc.SIZE, addr, len, flags, next);
    }

    /** Writes a descriptor into an indirect table at {@code tableGpa}. */
    void indirectDesc(long tableGpa, int i, long addr, int len, int flags, int next) {
        VringDesc.put(mem.at(tableGpa, (long) (i + 1) * VringDesc.SIZE), (long) i * VringDesc.SIZE, addr, len, flags, next);
    }

    /** Puts {@code head} in the avail ring and publishes it. */
    void offer(int head) {
        VringAvail.setRing(avail, availIdx % size, head);
        availIdx = (availIdx + 1) & 0xffff;
        VringAvail.idxRelease(avail, availIdx);
    }

    int next() {
        return q.next(chain);
    }

    /** True when every iovec of the current chain lies inside one of the guest's regions. */
    boolean iovecsInside() {
        for (int i = 0; i < chain.readableCount(); i++) {
            if (!inside(chain.readableBase(i), chain.readableLen(i))) {
                return false;
            }
        }
        for (int i = 0; i < chain.writableCount(); i++) {
            if (!inside(chain.writableBase(i), chain.writableLen(i))) {
                return false;
            }
        }
        return true;
    }

    boolean inside(long host, long len) {
        for (int r = 0; r < guest.regionCount(); r++) {
            long first = guest.regionHostAddr(r);
            long size = guest.region(r).size();
            if (host >= first && len >= 0 && host - first + len <= size) {
                return true;
            }
        }
        return false;
    }

    @Override
    public void close() {
        arena.close();
        mem.close();
    }
}
