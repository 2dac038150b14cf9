package io.jvhost.driver;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.RingLayout;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

/**
 * Driver (front-end) side of one split virtqueue, laid out in {@link DriverMemory} and sharing
 * the descriptor classes with the device. Behaves like Linux's {@code virtio_ring.c}: free
 * descriptors on a free list, one descriptor per indirect chain, {@code avail.idx} published with
 * a release store, kick decision with a full fence and {@code vring_need_event} on
 * {@code avail_event} (EVENT_IDX) or the NO_NOTIFY flag, used entries reclaimed after an
 * acquire-load of {@code used.idx}.
 *
 * <p>With IN_ORDER the descriptors are taken in table order (a chain is consecutive entries,
 * wrapping at the end of the table) and a used entry covers every buffer made available before the
 * one it names that is still in flight ({@link DriverQueue}).
 *
 * <p>Threading: one thread drives a queue (it adds, kicks and reclaims); the device runs
 * concurrently on the other side of the shared memory.
 */
public final class DriverVirtqueue implements DriverQueue {
    private final DriverMemory mem;
    private final int size;
    private final int mask;
    private final boolean eventIdx;
    private final boolean indirectFeature;
    private final boolean inOrder;
    private final int maxIndirect;

    private final long descGpa;
    private final long availGpa;
    private final long usedGpa;
    private final long indirectGpa;
    private final MemorySegment desc;
    private final MemorySegment avail;
    private final MemorySegment used;
    private final MemorySegment indirectArea;

    /** Free list of descriptor indices, linked through {@link #freeNext} (driver-private, never read from shared memory). */
    private final int[] freeNext;
    /** Descriptors held by the chain whose head is the index. 0 = not in flight. */
    private final int[] chainLength;
    private int freeHead;
    private int numFree;

    private int availIdx;
    private int kickedAvailIdx;
    private int lastUsedIdx;

    /** IN_ORDER: the head of the oldest chain in flight, and where the next chain starts. */
    private int inOrderOldest;
    private int inOrderNext;
    /** IN_ORDER: the head named by the used entry being returned buffer by buffer, or -1. */
    private int batchEnd = -1;
    private int batchLen;
    private long inOrderImplied;

    /**
     * Lays out the rings (desc 16-aligned, avail 2, used 4 — we use 4096 for all, as legacy did)
     * and, when indirect is negotiated, a {@code maxIndirect}-entry table per descriptor.
     *
     * @param features   negotiated features (EVENT_IDX, INDIRECT_DESC, IN_ORDER)
     * @param startIdx   initial avail/used index (0 normally; near 65535 to test wrap-around)
     */
    public DriverVirtqueue(DriverMemory mem, int size, long features, int maxIndirect, int startIdx) {
        this.mem = mem;
        this.size = VringDesc.checkQueueSize(size);
        this.mask = size - 1;
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.RING_F_EVENT_IDX);
        this.indirectFeature = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER);
        this.maxIndirect = indirectFeature ? maxIndirect : 0;
        this.descGpa = mem.alloc(VringDesc.tableSize(size), 4096);
        this.availGpa = mem.alloc(VringAvail.sizeOf(size), 4096);
        this.usedGpa = mem.alloc(VringUsed.sizeOf(size), 4096);
        this.desc = mem.at(descGpa, VringDesc.tableSize(size));
        this.avail = mem.at(availGpa, VringAvail.sizeOf(size));
        this.used = mem.at(usedGpa, VringUsed.sizeOf(size));
        if (this.maxIndirect > 0) {
            long bytes = (long) size * this.maxIndirect * VringDesc.SIZE;
            this.indirectGpa = mem.alloc(bytes, 16);
            this.indirectArea = mem.at(indirectGpa, bytes);
        } else {
            this.indirectGpa = 0;
            this.indirectArea = MemorySegment.NULL;
        }
        this.freeNext = new int[size];
        this.chainLength = new int[size];
        for (int i = 0; i < size; i++) {
            freeNext[i] = i + 1;
        }
        this.freeHead = 0;
        this.numFree = size;
        int s = startIdx & 0xffff;
        this.availIdx = s;
        this.kickedAvailIdx = s;
        this.lastUsedIdx = s;
        avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) s);
        used.set(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET, (short) s);
        VringAvail.setUsedEvent(avail, size, s);
        VringUsed.setAvailEvent(used, size, s);
    }

    @Override
    public RingLayout layout() {
        return RingLayout.SPLIT;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public long driverGpa() {
        return availGpa;
    }

    @Override
    public long deviceGpa() {
        return usedGpa;
    }

    /** The avail index: what the device resumes from. */
    @Override
    public int base() {
        return availIdx;
    }

    @Override
    public long descGpa() {
        return descGpa;
    }

    public long availGpa() {
        return availGpa;
    }

    public long usedGpa() {
        return usedGpa;
    }

    /** Ring segments, for an in-process device ({@code SplitVirtqueue.setRings}). */
    public MemorySegment descRing() {
        return desc;
    }

    public MemorySegment availRing() {
        return avail;
    }

    public MemorySegment usedRing() {
        return used;
    }

    /** The avail index the next {@link #publish()} starts from (the device's base at start). */
    public int availIdx() {
        return availIdx;
    }

    @Override
    public int numFree() {
        return numFree;
    }

    @Override
    public boolean indirectSupported() {
        return maxIndirect > 0;
    }

    /**
     * Adds a chain of {@code readable} device-readable buffers followed by {@code writable}
     * device-writable ones ({@code addrs[i]}, {@code lens[i]} guest physical) and puts its head in
     * the avail ring (not yet visible: call {@link #publish()}).
     *
     * @param useIndirect put the buffers in an indirect table (one ring descriptor)
     * @return the head index (the token {@link #pollUsed()} returns), or -1 when there is no room
     */
    @Override
    public int add(long[] addrs, int[] lens, int readable, int writable, boolean useIndirect) {
        int n = readable + writable;
        if (n < 1) {
            throw new IllegalArgumentException("empty chain");
        }
        int head;
        if (useIndirect) {
            if (n > maxIndirect) {
                throw new IllegalArgumentException("chain of " + n + " > indirect table size " + maxIndirect);
            }
            if (numFree < 1) {
                return -1;
            }
            head = takeHead(1);
            long tableOff = (long) head * maxIndirect * VringDesc.SIZE;
            for (int k = 0; k < n; k++) {
                int flags = (k >= readable ? VringDesc.F_WRITE : 0) | (k + 1 < n ? VringDesc.F_NEXT : 0);
                VringDesc.put(indirectArea, tableOff + (long) k * VringDesc.SIZE, addrs[k], lens[k], flags, k + 1 < n ? k + 1 : 0);
            }
            VringDesc.put(desc, (long) head * VringDesc.SIZE, indirectGpa + tableOff, n * VringDesc.SIZE,
                    VringDesc.F_INDIRECT, 0);
            chainLength[head] = 1;
        } else {
            if (n > size) {
                throw new IllegalArgumentException("chain of " + n + " > queue size " + size);
            }
            if (numFree < n) {
                return -1;
            }
            if (inOrder) {
                head = takeHead(n);
                for (int k = 0; k < n; k++) {
                    int i = (head + k) & mask;
                    int flags = (k >= readable ? VringDesc.F_WRITE : 0) | (k + 1 < n ? VringDesc.F_NEXT : 0);
                    VringDesc.put(desc, (long) i * VringDesc.SIZE, addrs[k], lens[k], flags, k + 1 < n ? (i + 1) & mask : 0);
                }
            } else {
                head = freeHead;
                int i = head;
                for (int k = 0; k < n; k++) {
                    int nextFree = freeNext[i];
                    int flags = (k >= readable ? VringDesc.F_WRITE : 0) | (k + 1 < n ? VringDesc.F_NEXT : 0);
                    VringDesc.put(desc, (long) i * VringDesc.SIZE, addrs[k], lens[k], flags, k + 1 < n ? nextFree : 0);
                    if (k + 1 < n) {
                        i = nextFree;
                    } else {
                        freeHead = nextFree;
                    }
                }
                numFree -= n;
            }
            chainLength[head] = n;
        }
        VringAvail.setRing(avail, availIdx & mask, head);
        availIdx = (availIdx + 1) & 0xffff;
        return head;
    }

    /**
     * Takes {@code n} descriptors for a chain (numFree checked by the caller): IN_ORDER the next
     * {@code n} in table order, else (only {@code n == 1}, for an indirect chain) the free list's head.
     */
    private int takeHead(int n) {
        int head;
        if (inOrder) {
            head = inOrderNext;
            inOrderNext = (head + n) & mask;
        } else {
            head = freeHead;
            freeHead = freeNext[head];
        }
        numFree -= n;
        return head;
    }

    /** Release-stores {@code avail.idx}: descriptors and ring entries written by {@link #add} become visible first. */
    @Override
    public void publish() {
        VringAvail.idxRelease(avail, availIdx);
    }

    /**
     * Whether the device wants a kick for what was published since the last decision
     * (Linux {@code virtqueue_kick_prepare}).
     */
    @Override
    public boolean kickNeeded() {
        // full fence (store->load): the release of avail.idx must be visible before we read
        // avail_event / flags, else the device may re-arm after reading the old idx and sleep.
        VarHandle.fullFence();
        int now = availIdx;
        int old = kickedAvailIdx;
        kickedAvailIdx = now;
        if (eventIdx) {
            return VringUsed.needEvent(VringUsed.availEvent(used, size), now, old);
        }
        return (VringUsed.flags(used) & VringUsed.F_NO_NOTIFY) == 0;
    }

    /**
     * Reclaims one used chain: frees its descriptors and returns {@code (head << 32) | len}, or
     * -1 when no used entry is pending.
     *
     * @throws IllegalStateException when the device returned a head that is not in flight
     */
    @Override
    public long pollUsed() {
        if (batchEnd >= 0) {
            return nextInOrder();
        }
        int last = lastUsedIdx;
        // acquire: the used element written before the device's release of used.idx is visible below
        if (VringUsed.idxAcquire(used) == last) {
            return -1;
        }
        int id = VringUsed.elemId(used, last & mask);
        int len = VringUsed.elemLen(used, last & mask);
        if (id < 0 || id >= size || chainLength[id] == 0) {
            throw new IllegalStateException("device returned head " + id + " which is not in flight (used idx " + last + ")");
        }
        if (inOrder) {
            // The entry covers every chain from the oldest in flight up to and including id, and
            // used.idx counts each of them (virtio 1.2 §2.7.9 "In-order": the device skips forward
            // in the ring and increments used.idx by the size of the batch).
            int cur = inOrderOldest;
            int steps = 0;
            while (cur != id) {
                if (chainLength[cur] == 0 || ++steps > size) {
                    throw new IllegalStateException("device returned head " + id + " which is not in flight after head "
                            + inOrderOldest + " (IN_ORDER, used idx " + last + ")");
                }
                cur = (cur + chainLength[cur]) & mask;
            }
            int published = (VringUsed.idxAcquire(used) - last) & 0xffff;
            if (steps + 1 > published) {
                throw new IllegalStateException("device's used entry at " + last + " names head " + id + ", covering "
                        + (steps + 1) + " buffers, but used.idx moved by only " + published + " (IN_ORDER)");
            }
            batchEnd = id;
            batchLen = len;
            return nextInOrder();
        }
        int n = chainLength[id];
        chainLength[id] = 0;
        // Walk our own links (add() chained the descriptors in freeNext order), not the shared table.
        int tail = id;
        for (int k = 1; k < n; k++) {
            tail = freeNext[tail];
        }
        freeNext[tail] = freeHead;
        freeHead = id;
        numFree += n;
        lastUsedIdx = (last + 1) & 0xffff;
        return ((long) id << 32) | Integer.toUnsignedLong(len);
    }

    /** The oldest chain in flight, as part of the IN_ORDER batch that ends at {@link #batchEnd}. */
    private long nextInOrder() {
        int head = inOrderOldest;
        int n = chainLength[head];
        chainLength[head] = 0;
        inOrderOldest = (head + n) & mask;
        numFree += n;
        lastUsedIdx = (lastUsedIdx + 1) & 0xffff;
        boolean last = head == batchEnd;
        if (last) {
            batchEnd = -1;
        } else {
            inOrderImplied++;
        }
        return ((long) head << 32) | (last ? Integer.toUnsignedLong(batchLen) : 0);
    }

    /** Number of used entries waiting (acquire-load of used.idx). */
    public int usedPending() {
        return (VringUsed.idxAcquire(used) - lastUsedIdx) & 0xffff;
    }

    /** Asks the device not to call: sets VRING_AVAIL_F_NO_INTERRUPT (without EVENT_IDX). */
    @Override
    public void disableCallbacks() {
        if (!eventIdx) {
            VringAvail.setFlags(avail, VringAvail.F_NO_INTERRUPT);
        }
    }

    /**
     * Asks the device to call on the next used entry, then re-checks.
     *
     * @return true when used entries are pending (reclaim them instead of waiting)
     */
    @Override
    public boolean enableCallbacks() {
        if (eventIdx) {
            VringAvail.setUsedEvent(avail, size, lastUsedIdx);
        } else {
            VringAvail.setFlags(avail, 0);
        }
        // full fence (store->load): the used_event/flags store must be visible before re-reading used.idx
        VarHandle.fullFence();
        return batchEnd >= 0 || VringUsed.idxAcquire(used) != lastUsedIdx;
    }

    /**
     * Like {@link #enableCallbacks} but, with EVENT_IDX, asks for the call only once {@code n}
     * (at least 1) more used entries have been published — Linux's
     * {@code virtqueue_enable_cb_delayed} with an explicit count: a driver that waits for half its
     * in-flight buffers takes one call per batch instead of one per buffer. Without EVENT_IDX the
     * device may call on the next entry.
     *
     * @return true when {@code n} used entries are already pending (reclaim instead of waiting)
     */
    @Override
    public boolean enableCallbacksAfter(int n) {
        if (inOrder) {
            // One used entry may cover the whole batch: a later used_event might never be crossed.
            return enableCallbacks();
        }
        int k = Math.max(1, n);
        if (eventIdx) {
            // The device calls when used.idx moves past used_event: used_event = last + k - 1.
            VringAvail.setUsedEvent(avail, size, (lastUsedIdx + k - 1) & 0xffff);
        } else {
            VringAvail.setFlags(avail, 0);
        }
        // full fence (store->load): the used_event/flags store must be visible before re-reading used.idx
        VarHandle.fullFence();
        return ((VringUsed.idxAcquire(used) - lastUsedIdx) & 0xffff) >= k;
    }

    /** The memory this queue lives in. */
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
        return "split avail{idx " + VringAvail.idxAcquire(avail) + ", flags " + VringAvail.flags(avail)
                + ", used_event " + VringAvail.usedEvent(avail, size) + "} used{idx " + VringUsed.idxAcquire(used)
                + ", flags " + VringUsed.flags(used) + ", avail_event " + VringUsed.availEvent(used, size)
                + "} unconsumed used " + usedPending() + ", free descriptors " + numFree
                + (inOrder ? ", in-order oldest head " + inOrderOldest : "");
    }
}
