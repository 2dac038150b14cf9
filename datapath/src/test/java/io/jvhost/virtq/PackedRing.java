package io.jvhost.virtq;

import io.jvhost.driver.DriverMemory;
import io.jvhost.memory.GuestMemory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;

/**
 * The driver side of a packed ring, written by hand in tests (correct chains through
 * {@link #offer}, anything through {@link #put}), with a {@link PackedVirtqueue} attached. Tracks
 * the driver's wrap counters and the slots per buffer id, and reads used descriptors as Linux's
 * {@code virtqueue_get_buf_ctx_packed} does (IN_ORDER: a used id completes every buffer made
 * available before it too).
 */
final class PackedRing implements AutoCloseable {
    final DriverMemory mem;
    final int size;
    final long descGpa;
    final long driverGpa;
    final long deviceGpa;
    final MemorySegment desc;
    final MemorySegment driverEvent;
    final MemorySegment deviceEvent;
    /** Free space for buffers and indirect tables (64 KiB). */
    final long dataGpa;
    final GuestMemory guest;
    final PackedVirtqueue q;
    final Chain chain;
    final boolean inOrder;
    private final Arena arena = Arena.ofConfined();

    /** Driver: next slot to make available and its wrap counter. */
    int availIdx;
    boolean availWrap = true;
    /** Driver: next slot to read a used descriptor from and its wrap counter. */
    int usedIdx;
    boolean usedWrap = true;
    /** Slots per buffer id of the chains made available and not used yet; -1 free. */
    final int[] slotsOf;
    /** Buffer ids in the order made available (IN_ORDER completion). */
    final ArrayDeque<Integer> order = new ArrayDeque<>();
    /** Last used descriptor read: id, len. */
    int lastId;
    int lastLen;

    PackedRing(int size, long features, int regions, int iovCapacity) {
        this.mem = DriverMemory.allocate(1 << 20, DriverMemory.DEFAULT_GPA_BASE);
        this.size = size;
        this.descGpa = mem.alloc(RingLayout.PACKED.descBytes(size), 4096);
        this.driverGpa = mem.alloc(PackedEvent.SIZE, 64);
        this.deviceGpa = mem.alloc(PackedEvent.SIZE, 64);
        this.desc = mem.at(descGpa, RingLayout.PACKED.descBytes(size));
        this.driverEvent = mem.at(driverGpa, PackedEvent.SIZE);
        this.deviceEvent = mem.at(deviceGpa, PackedEvent.SIZE);
        this.dataGpa = mem.alloc(64 * 1024, 4096);
        this.guest = mem.guestMemory(regions);
        this.inOrder = (features & (1L << io.jvhost.virtio.VirtioFeatures.F_IN_ORDER)) != 0;
        this.slotsOf = new int[size];
        java.util.Arrays.fill(slotsOf, -1);
        this.q = new PackedVirtqueue("packed-test");
        q.setSize(size);
        q.setFeatures(features);
        q.setMemory(guest);
        q.setRings(desc, driverEvent, deviceEvent);
        q.setBase(PackedEvent.offWrap(0, true));
        q.start();
        this.chain = new Chain(arena, iovCapacity);
    }

    /** Host-side view of guest bytes. */
    MemorySegment at(long gpa, long len) {
        return mem.at(gpa, len);
    }

    /** Raw descriptor write at {@code slot} with the given flags (the flags store is a release). */
    void put(int slot, long addr, int len, int id, int flags) {
        long off = PackedDesc.offset(slot);
        PackedDesc.put(desc, off, addr, len, id);
        PackedDesc.flagsRelease(desc, off, flags);
    }

    /** Writes an indirect table entry. */
    void indirectDesc(long tableGpa, int i, long addr, int len, int flags) {
        PackedDesc.putPlain(mem.at(tableGpa, (long) (i + 1) * PackedDesc.SIZE), (long) i * PackedDesc.SIZE, addr, len,
                0, flags);
    }

    /**
     * Makes a chain available as a driver does: descriptors after the head first, the head's
     * flags last. {@code flags[i]} holds NEXT (added here between elements), WRITE, INDIRECT.
     */
    void offer(int id, long[] addrs, int[] lens, int[] flags) {
        int n = addrs.length;
        if (slotsOf[id] >= 0) {
            throw new IllegalStateException("id " + id + " in use");
        }
        int head = availIdx;
        boolean headWrap = availWrap;
        int slot = head;
        boolean wrap = headWrap;
        for (int i = 0; i < n; i++) {
            int f = flags[i] | (i < n - 1 ? PackedDesc.F_NEXT : 0) | PackedDesc.availFlags(wrap);
            long off = PackedDesc.offset(slot);
            PackedDesc.put(desc, off, addrs[i], lens[i], id);
            if (i > 0) {
                PackedDesc.flagsRelease(desc, off, f);
            }
            if (++slot == size) {
                slot = 0;
                wrap = !wrap;
            }
        }
        PackedDesc.flagsRelease(desc, PackedDesc.offset(head),
                flags[0] | (n > 1 ? PackedDesc.F_NEXT : 0) | PackedDesc.availFlags(headWrap));
        availIdx = slot;
        availWrap = wrap;
        slotsOf[id] = n;
        order.add(id);
    }

    /** A one-descriptor chain. */
    void offer(int id, long addr, int len, int flags) {
        offer(id, new long[]{addr}, new int[]{len}, new int[]{flags});
    }

    /** Free slots from the driver's view. */
    int freeSlots() {
        int used = 0;
        for (int s : slotsOf) {
            if (s > 0) {
                used += s;
            }
        }
        return size - used;
    }

    /**
     * Reads the next used descriptor, if any: returns the buffers it completes (1, or with
     * IN_ORDER all made available up to its id); sets {@link #lastId}/{@link #lastLen}. 0: none.
     *
     * @throws IllegalStateException when the id is not in flight (a duplicate or a made-up id)
     */
    int poll() {
        long off = PackedDesc.offset(usedIdx);
        int f = PackedDesc.flagsAcquire(desc, off);
        if (!PackedDesc.isUsed(f, usedWrap)) {
            return 0;
        }
        int id = PackedDesc.id(desc, off);
        lastId = id;
        lastLen = PackedDesc.len(desc, off);
        if (id >= size || slotsOf[id] < 0) {
            throw new IllegalStateException("used id " + id + " not in flight at slot " + usedIdx);
        }
        int buffers = 0;
        int slots = 0;
        if (inOrder) {
            while (true) {
                Integer o = order.poll();
                if (o == null) {
                    throw new IllegalStateException("in-order used id " + id + " not found");
                }
                slots += slotsOf[o];
                slotsOf[o] = -1;
                buffers++;
                if (o == id) {
                    break;
                }
            }
        } else {
            order.remove(id);
            slots = slotsOf[id];
            slotsOf[id] = -1;
            buffers = 1;
        }
        int u = usedIdx + slots;
        if (u >= size) {
            u -= size;
            usedWrap = !usedWrap;
        }
        usedIdx = u;
        return buffers;
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
            long sz = guest.region(r).size();
            if (host >= first && len >= 0 && host - first + len <= sz) {
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
