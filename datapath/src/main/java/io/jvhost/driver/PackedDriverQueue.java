package io.jvhost.driver;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.PackedDesc;
import io.jvhost.virtq.PackedEvent;
import io.jvhost.virtq.RingLayout;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

/**
 * Driver (front-end) side of one packed virtqueue (virtio 1.2 §2.8), laid out in
 * {@link DriverMemory} with {@link RingLayout#PACKED}'s sizes and alignments and written through the
 * device's descriptor classes ({@link PackedDesc}, {@link PackedEvent}). Any size from 1 to 32768,
 * not only powers of two.
 *
 * <p>As Linux's {@code virtio_ring.c} (packed part) does it: the driver fills ring slots in order
 * with its wrap counter in each descriptor's AVAIL/USED bits, the counter flipping each time it
 * passes the end of the ring; a chain is consecutive slots. Every descriptor of a chain is written
 * at {@link #add}, except the head's flags: {@link #publish} stores those, the batch's later heads
 * first and its first head last, each with a release, so the device sees each chain complete and,
 * as it reads slots in order, the batch at once. The device reports a buffer by writing a used
 * descriptor (its id, bytes written, both flag bits equal to the device's wrap counter) at the next
 * used position, which then moves by the buffer's descriptor count.
 *
 * <p>Buffer ids: without IN_ORDER, from a free list (the device may use buffers in any order, so an
 * id cannot be a slot that is reused while its buffer is out); with IN_ORDER the id is the head's
 * slot, so ids are given in order and one used descriptor naming the last buffer of a batch lets
 * the driver walk from its used position through the batch (each buffer's descriptor count to the
 * next head) — as DPDK's virtio driver does.
 *
 * <p>Notifications: the driver area is the driver's event suppression (ENABLE, DISABLE, or with
 * EVENT_IDX, DESC at an {@code off_wrap} used position); the device area is the device's, read
 * with a full fence before the kick decision ({@code vring_need_event} over ring positions,
 * unwrapped by the wrap counter).
 *
 * <p>Threading: one thread drives a queue (it adds, kicks and reclaims); the device runs
 * concurrently on the other side of the shared memory.
 */
public final class PackedDriverQueue implements DriverQueue {
    private final DriverMemory mem;
    private final int size;
    private final boolean eventIdx;
    private final boolean inOrder;
    private final int maxIndirect;

    private final long descGpa;
    private final long driverGpa;
    private final long deviceGpa;
    private final long indirectGpa;
    private final MemorySegment ring;
    private final MemorySegment driverEvent;
    private final MemorySegment deviceEvent;
    private final MemorySegment indirectArea;

    /** Ring descriptors held by the buffer with this id; 0 = not in flight. */
    private final int[] chainLength;
    /** Free buffer ids (without IN_ORDER), linked through this array. */
    private final int[] idNext;
    private int freeId;

    /** Heads added and not yet published, and the flags that make each available. */
    private final int[] pendingSlot;
    private final int[] pendingFlags;
    private int pending;

    private int numFree;
    private int nextAvail;
    private boolean availWrap;
    private int lastUsed;
    private boolean usedWrap;
    /** Descriptors made available since the last kick decision. */
    private int addedSinceKick;

    /** IN_ORDER: the last buffer of the batch a used descriptor named, while returning it buffer by buffer; else -1. */
    private int batchEnd = -1;
    private int batchLen;
    private long inOrderImplied;

    /**
     * Lays out the ring (descriptors 16-aligned, the two event areas 4-aligned; the ring on its own
     * page as Linux does) and, with INDIRECT_DESC, a {@code maxIndirect}-entry table per buffer id.
     *
     * @param features  negotiated features (EVENT_IDX, INDIRECT_DESC, IN_ORDER)
     * @param startSlot first ring slot used (0 normally; tests start near the end to wrap early)
     * @param startWrap the driver's (and device's) wrap counter at {@code startSlot} (true normally)
     */
    public PackedDriverQueue(DriverMemory mem, int size, long features, int maxIndirect, int startSlot, boolean startWrap) {
        String bad = RingLayout.PACKED.checkSize(size);
        if (bad != null) {
            throw new IllegalArgumentException("packed ring " + bad);
        }
        if (startSlot < 0 || startSlot >= size) {
            throw new IllegalArgumentException("start slot " + startSlot + " outside a ring of " + size);
        }
        this.mem = mem;
        this.size = size;
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.RING_F_EVENT_IDX);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER);
        this.maxIndirect = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC) ? maxIndirect : 0;
        RingLayout l = RingLayout.PACKED;
        this.descGpa = mem.alloc(l.descBytes(size), Math.max(4096, l.descAlign()));
        this.driverGpa = mem.alloc(l.driverBytes(size), l.driverAlign());
        this.deviceGpa = mem.alloc(l.deviceBytes(size), l.deviceAlign());
        this.ring = mem.at(descGpa, l.descBytes(size));
        this.driverEvent = mem.at(driverGpa, l.driverBytes(size));
        this.deviceEvent = mem.at(deviceGpa, l.deviceBytes(size));
        if (this.maxIndirect > 0) {
            long bytes = (long) size * this.maxIndirect * PackedDesc.SIZE;
            this.indirectGpa = mem.alloc(bytes, PackedDesc.ALIGN);
            this.indirectArea = mem.at(indirectGpa, bytes);
        } else {
            this.indirectGpa = 0;
            this.indirectArea = MemorySegment.NULL;
        }
        this.chainLength = new int[size];
        this.idNext = new int[size];
        for (int i = 0; i < size; i++) {
            idNext[i] = i + 1;
        }
        this.freeId = 0;
        this.pendingSlot = new int[size];
        this.pendingFlags = new int[size];
        this.numFree = size;
        this.nextAvail = startSlot;
        this.availWrap = startWrap;
        this.lastUsed = startSlot;
        this.usedWrap = startWrap;
        // As a ring stopped at startSlot would be: the slots before it used in this lap, the others
        // in the previous one, so that no slot looks available or used before it is.
        for (int i = 0; i < size; i++) {
            PackedDesc.putPlain(ring, PackedDesc.offset(i), 0, 0, 0, PackedDesc.usedFlags(i < startSlot == startWrap));
        }
        PackedEvent.set(deviceEvent, 0, PackedEvent.FLAG_ENABLE);
        PackedEvent.set(driverEvent, PackedEvent.offWrap(startSlot, startWrap), PackedEvent.FLAG_ENABLE);
    }

    @Override
    public RingLayout layout() {
        return RingLayout.PACKED;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public long descGpa() {
        return descGpa;
    }

    @Override
    public long driverGpa() {
        return driverGpa;
    }

    @Override
    public long deviceGpa() {
        return deviceGpa;
    }

    /** The descriptor ring, the driver and the device event areas (for an in-process device, tests). */
    public MemorySegment descRing() {
        return ring;
    }

    public MemorySegment driverArea() {
        return driverEvent;
    }

    public MemorySegment deviceArea() {
        return deviceEvent;
    }

    /** The next slot to fill with the driver's wrap counter in bit 15: the vhost-user ring base. */
    @Override
    public int base() {
        return PackedEvent.offWrap(nextAvail, availWrap);
    }

    @Override
    public int numFree() {
        return numFree;
    }

    @Override
    public boolean indirectSupported() {
        return maxIndirect > 0;
    }

    /** The driver's wrap counter (for the next slot it fills). */
    public boolean availWrapCounter() {
        return availWrap;
    }

    /** The wrap counter the next used descriptor must carry. */
    public boolean usedWrapCounter() {
        return usedWrap;
    }

    @Override
    public int add(long[] addrs, int[] lens, int readable, int writable, boolean useIndirect) {
        int n = readable + writable;
        if (n < 1) {
            throw new IllegalArgumentException("empty chain");
        }
        int slots = useIndirect ? 1 : n;
        if (useIndirect) {
            if (n > maxIndirect) {
                throw new IllegalArgumentException("chain of " + n + " > indirect table size " + maxIndirect);
            }
        } else if (n > size) {
            throw new IllegalArgumentException("chain of " + n + " > queue size " + size);
        }
        if (numFree < slots) {
            return -1;
        }
        int id;
        if (inOrder) {
            id = nextAvail;
        } else {
            id = freeId;
            freeId = idNext[id];
        }
        int head = nextAvail;
        int headFlags;
        if (useIndirect) {
            long tableOff = (long) id * maxIndirect * PackedDesc.SIZE;
            for (int k = 0; k < n; k++) {
                // In an indirect table only WRITE counts (NEXT, AVAIL, USED are ignored).
                PackedDesc.putPlain(indirectArea, tableOff + (long) k * PackedDesc.SIZE, addrs[k], lens[k], 0,
                        k >= readable ? PackedDesc.F_WRITE : 0);
            }
            PackedDesc.put(ring, PackedDesc.offset(head), indirectGpa + tableOff, n * PackedDesc.SIZE, id);
            headFlags = PackedDesc.F_INDIRECT | PackedDesc.availFlags(availWrap);
            advanceAvail();
        } else {
            headFlags = 0;
            for (int k = 0; k < n; k++) {
                int flags = (k >= readable ? PackedDesc.F_WRITE : 0) | (k + 1 < n ? PackedDesc.F_NEXT : 0)
                        | PackedDesc.availFlags(availWrap);
                if (k == 0) {
                    PackedDesc.put(ring, PackedDesc.offset(nextAvail), addrs[k], lens[k], id);
                    headFlags = flags;
                } else {
                    // Behind the unpublished head: the device reads none of these before it.
                    PackedDesc.putPlain(ring, PackedDesc.offset(nextAvail), addrs[k], lens[k], id, flags);
                }
                advanceAvail();
            }
        }
        chainLength[id] = slots;
        numFree -= slots;
        addedSinceKick += slots;
        pendingSlot[pending] = head;
        pendingFlags[pending] = headFlags;
        pending++;
        return id;
    }

    private void advanceAvail() {
        if (++nextAvail == size) {
            nextAvail = 0;
            availWrap = !availWrap;
        }
    }

    /**
     * Stores the pending heads' flags, the first head last: release before each, so a chain's
     * descriptors are visible before its head and the device, which reads slots in order, finds
     * the whole batch when it finds the first head.
     */
    @Override
    public void publish() {
        for (int i = pending - 1; i >= 0; i--) {
            PackedDesc.flagsRelease(ring, PackedDesc.offset(pendingSlot[i]), pendingFlags[i]);
        }
        pending = 0;
    }

    /** Linux {@code virtqueue_kick_prepare_packed}. */
    @Override
    public boolean kickNeeded() {
        // full fence (store->load): the heads' flags must be visible before we read the device's
        // event area, else the device may re-arm after its last look at the ring and sleep.
        VarHandle.fullFence();
        int added = addedSinceKick;
        addedSinceKick = 0;
        int flags = PackedEvent.flagsAcquire(deviceEvent);
        if (flags != PackedEvent.FLAG_DESC || !eventIdx) {
            return flags != PackedEvent.FLAG_DISABLE;
        }
        int offWrap = PackedEvent.offWrap(deviceEvent);
        int event = offWrap & PackedEvent.OFF_MASK;
        if (((offWrap >>> PackedEvent.WRAP_SHIFT) != 0) != availWrap) {
            event -= size; // the slot is in the previous lap
        }
        int now = nextAvail;
        int old = now - added;
        // vring_need_event over unwrapped positions: did [old, now) pass the event slot?
        return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
    }

    @Override
    public long pollUsed() {
        if (batchEnd >= 0) {
            return nextInOrder();
        }
        long off = PackedDesc.offset(lastUsed);
        // acquire: id and len written before the device's release of the flags are visible below
        if (!PackedDesc.isUsed(PackedDesc.flagsAcquire(ring, off), usedWrap)) {
            return -1;
        }
        int id = PackedDesc.id(ring, off);
        int len = PackedDesc.len(ring, off);
        if (id >= size || chainLength[id] == 0) {
            throw new IllegalStateException("device returned buffer id " + id + " which is not in flight (used slot "
                    + lastUsed + ", wrap " + (usedWrap ? 1 : 0) + ")");
        }
        if (inOrder) {
            // The descriptor covers every buffer from the one at lastUsed up to and including id.
            int cur = lastUsed;
            int steps = 0;
            while (cur != id) {
                if (chainLength[cur] == 0 || ++steps > size) {
                    throw new IllegalStateException("device returned buffer id " + id + " which is not in flight after "
                            + lastUsed + " (IN_ORDER)");
                }
                cur = (cur + chainLength[cur]) % size;
            }
            batchEnd = id;
            batchLen = len;
            return nextInOrder();
        }
        return complete(id, len);
    }

    /** The oldest buffer in flight (its id is its head slot), part of the batch that ends at {@link #batchEnd}. */
    private long nextInOrder() {
        int id = lastUsed;
        boolean last = id == batchEnd;
        if (last) {
            batchEnd = -1;
        } else {
            inOrderImplied++;
        }
        return complete(id, last ? batchLen : 0);
    }

    private long complete(int id, int len) {
        int n = chainLength[id];
        chainLength[id] = 0;
        if (!inOrder) {
            idNext[id] = freeId;
            freeId = id;
        }
        numFree += n;
        lastUsed += n;
        if (lastUsed >= size) {
            lastUsed -= size;
            usedWrap = !usedWrap;
        }
        return ((long) id << 32) | Integer.toUnsignedLong(len);
    }

    /**
     * Used buffers waiting, counted up to {@code limit} without taking them (acquire-loads of the
     * used positions' flags).
     */
    public int usedPending(int limit) {
        int c = 0;
        int cur = lastUsed;
        boolean wrap = usedWrap;
        if (batchEnd >= 0) {
            // The rest of the batch: oldest buffer up to batchEnd.
            while (c < limit) {
                c++;
                boolean end = cur == batchEnd;
                cur += chainLength[cur];
                if (cur >= size) {
                    cur -= size;
                    wrap = !wrap;
                }
                if (end) {
                    break;
                }
            }
        }
        int steps = 0;
        while (c < limit && steps++ < size) {
            long off = PackedDesc.offset(cur);
            if (!PackedDesc.isUsed(PackedDesc.flagsAcquire(ring, off), wrap)) {
                break;
            }
            int id = PackedDesc.id(ring, off);
            if (id >= size || chainLength[id] == 0) {
                break; // pollUsed reports it
            }
            int covered = 1;
            int n = chainLength[id];
            if (inOrder) {
                int x = cur;
                n = 0;
                covered = 0;
                while (x != id && covered <= size) {
                    int l = chainLength[x];
                    if (l == 0) {
                        return c; // pollUsed reports it
                    }
                    n += l;
                    covered++;
                    x = (x + l) % size;
                }
                n += chainLength[id];
                covered++;
            }
            c += covered;
            cur += n;
            while (cur >= size) {
                cur -= size;
                wrap = !wrap;
            }
        }
        return Math.min(c, limit);
    }

    /** Asks the device not to call (DISABLE, with or without EVENT_IDX). */
    @Override
    public void disableCallbacks() {
        PackedEvent.set(driverEvent, PackedEvent.offWrap(lastUsed, usedWrap), PackedEvent.FLAG_DISABLE);
    }

    /** Linux {@code virtqueue_enable_cb_prepare_packed} + {@code virtqueue_poll_packed}. */
    @Override
    public boolean enableCallbacks() {
        if (eventIdx) {
            PackedEvent.set(driverEvent, PackedEvent.offWrap(lastUsed, usedWrap), PackedEvent.FLAG_DESC);
        } else {
            PackedEvent.set(driverEvent, 0, PackedEvent.FLAG_ENABLE);
        }
        // full fence (store->load): the event store must be visible before we look at the ring again
        VarHandle.fullFence();
        return batchEnd >= 0 || PackedDesc.isUsed(PackedDesc.flagsAcquire(ring, PackedDesc.offset(lastUsed)), usedWrap);
    }

    /**
     * With EVENT_IDX the call is asked for at the used position {@code n - 1} slots on: a buffer
     * holds at least one slot, so the device passes it no later than with the {@code n}-th used
     * buffer (earlier for longer chains); capped by the slots in flight so that it is passed at all.
     */
    @Override
    public boolean enableCallbacksAfter(int n) {
        int k = Math.max(1, n);
        if (eventIdx) {
            int inFlight = size - numFree;
            int ahead = Math.max(0, Math.min(k, inFlight) - 1);
            int pos = lastUsed + ahead;
            boolean wrap = usedWrap;
            if (pos >= size) {
                pos -= size;
                wrap = !wrap;
            }
            PackedEvent.set(driverEvent, PackedEvent.offWrap(pos, wrap), PackedEvent.FLAG_DESC);
        } else {
            PackedEvent.set(driverEvent, 0, PackedEvent.FLAG_ENABLE);
        }
        // full fence (store->load): the event store must be visible before we look at the ring again
        VarHandle.fullFence();
        return usedPending(k) >= k;
    }

    @Override
    public DriverMemory memory() {
        return mem;
    }

    @Override
    public long inOrderImplied() {
        return inOrderImplied;
    }

    @Override
    public String describe() {
        int devFlags = PackedEvent.flagsAcquire(deviceEvent);
        int drvFlags = PackedEvent.flagsAcquire(driverEvent);
        return "packed next avail " + nextAvail + " wrap " + (availWrap ? 1 : 0) + ", last used " + lastUsed + " wrap "
                + (usedWrap ? 1 : 0) + ", slot flags 0x" + Integer.toHexString(PackedDesc.flags(ring, PackedDesc.offset(lastUsed)))
                + ", driver event{flags " + drvFlags + ", off_wrap 0x" + Integer.toHexString(PackedEvent.offWrap(driverEvent))
                + "} device event{flags " + devFlags + ", off_wrap 0x" + Integer.toHexString(PackedEvent.offWrap(deviceEvent))
                + "} unconsumed used " + usedPending(size) + ", free descriptors " + numFree
                + (inOrder ? ", in order" : "");
    }
}
