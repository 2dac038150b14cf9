package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * Device side of one split virtqueue (virtio 1.x §2.7): takes descriptor chains the driver made
 * available, turns them into iovecs pointing into guest memory, returns them as used and decides
 * when the driver wants a call (interrupt).
 *
 * <h2>Hostile driver</h2>
 * Every guest-controlled value is validated before it is used: head and next indices against the
 * queue (or indirect table) size, chain length against the table size (loops), indirect tables
 * (one level, length a non-zero multiple of 16, bounded, inside one region, not combined with
 * NEXT, only when negotiated), buffer address ranges against the guest memory table (with 64-bit
 * overflow checks), readable-after-writable ordering, {@code avail.idx} jumps larger than the
 * queue, and chains longer than the iovec array. A violation marks the queue broken
 * ({@link #brokenReason()}, logged once, counted, the broken handler is called once) and
 * {@link #next} returns {@link #BROKEN} from then on. Nothing outside the guest's regions is ever
 * read or written; each descriptor is read exactly once into locals (no double fetch).
 *
 * <h2>Memory order</h2>
 * <ul>
 *   <li>{@code avail.idx} is acquire-loaded before any ring entry or descriptor is read
 *       ({@link VringAvail#idxAcquire}).</li>
 *   <li>Used elements are written with plain stores, then {@code used.idx} is release-stored
 *       ({@link VringUsed#idxRelease}) by {@link #publishUsed()}.</li>
 *   <li>{@link #needsCall()} issues a full fence between the release of {@code used.idx} and the
 *       load of {@code used_event}/{@code flags}; {@link #enableNotification()} issues one between
 *       the store of {@code avail_event}/{@code flags} and the re-load of {@code avail.idx}. Both
 *       are store→load orderings that acquire/release cannot give; without them both sides can
 *       go to sleep (lost wake-up).</li>
 * </ul>
 *
 * <h2>IN_ORDER</h2>
 * With {@code VIRTIO_F_IN_ORDER} a completion that overtakes an older chain in flight is held back
 * (its length kept) and written when the older ones complete: used elements appear in the order the
 * chains were made available. A run of consecutive device-read-only chains (TX) used with length 0
 * is written as one used element, at the run's first slot, naming the run's last head; {@code
 * used.idx} still moves by one per chain (virtio 1.2 §2.7.9 "In-order": the device skips forward in
 * the ring by the size of the batch), so it keeps counting the chains used. A chain with a writable
 * part always gets its own element: the driver learns its length only from it.
 *
 * <h2>Threading</h2>
 * Owned by one queue-pair worker thread: every method except {@link #brokenReason()},
 * {@link #brokenMessage()} and {@link #errorCount()} must be called from that thread, or from the
 * control thread while no worker runs the queue. Lock-free, allocation-free on the hot path
 * ({@link #next}, {@link #addUsed}, {@link #publishUsed}, {@link #needsCall},
 * {@link #enableNotification}, {@link #disableNotification}).
 */
public final class SplitVirtqueue implements DeviceQueue {

    private static final System.Logger LOG = System.getLogger(SplitVirtqueue.class.getName());

    private final String name;

    private int size;
    private int mask;
    private MemorySegment desc;
    private MemorySegment avail;
    private MemorySegment used;
    private GuestMemory memory = GuestMemory.empty();
    private long descUva;
    private long availUva;
    private long usedUva;
    private boolean ringsFromUva;

    private boolean eventIdx;
    private boolean indirect;
    private boolean inOrder;
    private int maxIndirectEntries;
    /** IN_ORDER: per head, the length of a completion held back behind an older chain, or -1. */
    private int[] deferredLen = new int[0];
    private int deferred;
    /** IN_ORDER: per head, whether the chain last taken there was device-read-only. */
    private boolean[] readOnly = new boolean[0];
    /** IN_ORDER: a run of elided read-only completions is open: its first used slot and last head. */
    private boolean held;
    private int heldSlot;
    private int heldHead;
    /** IN_ORDER: the open run's number, and per head the run it last joined (a head twice ends a run). */
    private int run;
    private int[] runOf = new int[0];

    private boolean started;
    /** Next avail slot to take (16-bit, free running). */
    private int lastAvailIdx;
    /** Last value of avail.idx we acquire-loaded. */
    private int shadowAvailIdx;
    /** Next used slot to write (16-bit), ahead of {@link #publishedUsedIdx} while a batch is open. */
    private int usedIdx;
    /** Last value release-stored to used.idx. */
    private int publishedUsedIdx;
    /** used.idx at the last call decision. */
    private int signalledUsedIdx;
    private boolean signalledValid;

    /** Dirty log for the used ring's writes, or null (not migrating, or the ring's log flag is off). */
    private DirtyLog usedLog;
    /** Guest-physical address of the used ring for {@link #usedLog}. */
    private long usedLogGpa;

    private volatile VirtqError brokenReason;
    private volatile String brokenMessage;
    private final AtomicLong errorCount = new AtomicLong();
    private Consumer<DeviceQueue> brokenHandler;
    /** Chains taken and not completed, in the order taken. */
    private final InFlight inFlight = new InFlight();

    /** @param name used in log lines, e.g. "vhost0 rx0" */
    public SplitVirtqueue(String name) {
        this.name = name;
    }

    // ------------------------------------------------------------------------------------------
    // Configuration (control path; queue stopped)

    @Override
    public RingLayout layout() {
        return RingLayout.SPLIT;
    }

    /** Sets the queue size (a power of two, 1..32768). */
    @Override
    public void setSize(int queueSize) {
        this.size = VringDesc.checkQueueSize(queueSize);
        this.mask = queueSize - 1;
        this.maxIndirectEntries = Math.max(queueSize, Chain.UIO_MAXIOV);
        inFlight.ensureCapacity(queueSize);
        if (deferredLen.length < queueSize) {
            deferredLen = new int[queueSize];
            readOnly = new boolean[queueSize];
            runOf = new int[queueSize];
        }
        clearDeferred();
    }

    private void clearDeferred() {
        java.util.Arrays.fill(deferredLen, -1);
        deferred = 0;
        held = false;
    }

    @Override
    public int size() {
        return size;
    }

    /** Sets the negotiated features; only the ring bits matter here. */
    @Override
    public void setFeatures(long features) {
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.RING_F_EVENT_IDX);
        this.indirect = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER);
    }

    public boolean eventIdx() {
        return eventIdx;
    }

    public boolean indirect() {
        return indirect;
    }

    @Override
    public boolean inOrder() {
        return inOrder;
    }

    @Override
    public void setBrokenHandler(Consumer<DeviceQueue> handler) {
        this.brokenHandler = handler;
    }

    /**
     * Uses already-mapped ring areas (tests, in-process driver). Sizes must match
     * {@link #size()}: desc {@link VringDesc#tableSize}, avail {@link VringAvail#sizeOf},
     * used {@link VringUsed#sizeOf}; alignment as the spec requires.
     *
     * @throws IllegalArgumentException on a size or alignment mismatch
     */
    @Override
    public void setRings(MemorySegment descTable, MemorySegment availRing, MemorySegment usedRing) {
        requireSize();
        checkRing("desc", descTable, VringDesc.tableSize(size), VringDesc.ALIGN);
        checkRing("avail", availRing, VringAvail.sizeOf(size), VringAvail.ALIGN);
        checkRing("used", usedRing, VringUsed.sizeOf(size), VringUsed.ALIGN);
        this.desc = descTable;
        this.avail = availRing;
        this.used = usedRing;
        this.ringsFromUva = false;
    }

    /**
     * Sets the guest memory table used to translate descriptor addresses and, when the rings were
     * given as front-end addresses, re-translates them (a new table after SET_MEM_TABLE /
     * ADD_MEM_REG / REM_MEM_REG). Call on the worker when it switches tables.
     *
     * @return false (and the queue marked broken) when a started queue's rings are no longer inside the table
     */
    @Override
    public boolean setMemory(GuestMemory table) {
        this.memory = table;
        if (!ringsFromUva) {
            return true;
        }
        if (!started) {
            // A stopped queue's rings are not in use: a table that does not cover them is no driver
            // error (QEMU changes its memory map between GET_VRING_BASE and the next SET_VRING_ADDR).
            // Drop the stale translations; a start needs new addresses.
            if (!covers(table)) {
                ringsFromUva = false;
                desc = null;
                avail = null;
                used = null;
                return true;
            }
        }
        return translateRings();
    }

    private boolean covers(GuestMemory m) {
        return m.uvaToSegment(descUva, VringDesc.tableSize(size)) != null
                && m.uvaToSegment(availUva, VringAvail.sizeOf(size)) != null
                && m.uvaToSegment(usedUva, VringUsed.sizeOf(size)) != null;
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    /**
     * Sets ring addresses as front-end virtual addresses ({@code SET_VRING_ADDR}) and translates
     * them with the current memory table.
     *
     * @return false (and the queue marked broken) when a ring is outside memory or misaligned
     */
    @Override
    public boolean setAddresses(long descUserAddr, long availUserAddr, long usedUserAddr) {
        requireSize();
        this.descUva = descUserAddr;
        this.availUva = availUserAddr;
        this.usedUva = usedUserAddr;
        this.ringsFromUva = true;
        return translateRings();
    }

    private boolean translateRings() {
        GuestMemory m = memory;
        MemorySegment d = m.uvaToSegment(descUva, VringDesc.tableSize(size));
        MemorySegment a = m.uvaToSegment(availUva, VringAvail.sizeOf(size));
        MemorySegment u = m.uvaToSegment(usedUva, VringUsed.sizeOf(size));
        if (d == null || a == null || u == null
                || d.address() % VringDesc.ALIGN != 0 || a.address() % VringAvail.ALIGN != 0
                || u.address() % VringUsed.ALIGN != 0) {
            fail(VirtqError.BAD_RING_ADDRESS, "rings desc=0x" + Long.toHexString(descUva) + " avail=0x"
                    + Long.toHexString(availUva) + " used=0x" + Long.toHexString(usedUva) + " size=" + size
                    + " not inside one region each / misaligned");
            return false;
        }
        this.desc = d;
        this.avail = a;
        this.used = u;
        return true;
    }

    @Override
    public void setDirtyLog(DirtyLog log, boolean logRing, long logGuestAddr) {
        this.usedLog = logRing ? log : null;
        this.usedLogGpa = logGuestAddr;
    }

    /** Marks {@code len} bytes at offset {@code off} of the used ring in the dirty log. */
    private void logUsed(DirtyLog log, long off, long len) {
        log.mark(usedLogGpa + off, len);
    }

    /** {@code SET_VRING_BASE}: the next avail index to process. */
    @Override
    public void setBase(int base) {
        this.lastAvailIdx = base & 0xffff;
        this.shadowAvailIdx = lastAvailIdx;
    }

    /** {@code GET_VRING_BASE}: the next avail index to process. */
    @Override
    public int base() {
        return lastAvailIdx;
    }

    /**
     * Starts processing: the device's used index is taken from {@code used.idx} in the ring (the
     * driver initialises it; after a stop every taken chain has been returned).
     *
     * <p>This device completes chains in order, so {@code used.idx} is also where processing must
     * resume: when the base given by {@link #setBase} differs from it, the ring's {@code used.idx}
     * wins (as in DPDK's and libvhost-user's back-ends). The two differ when the front-end has lost
     * track of the back-end: DPDK virtio-user re-sends base 0 for a running ring when a back-end
     * reconnects (without this the queue broke on an avail index "jump" of a whole ring), and a
     * chain taken by a back-end that then died was never returned. Resuming at {@code used.idx}
     * offers such in-flight chains again: a TX frame may go out twice, an RX buffer is simply
     * filled anew — what a device reset would lose otherwise.
     */
    @Override
    public void start() {
        if (desc == null) {
            throw new IllegalStateException(name + ": rings not set");
        }
        int u = Short.toUnsignedInt(used.get(VringDesc.LE_SHORT, VringUsed.IDX_OFFSET));
        if (u != lastAvailIdx) {
            LOG.log(System.Logger.Level.WARNING, "{0}: base {1} given but used.idx is {2}: resuming at {2}"
                    + " (front-end lost track, e.g. after a back-end restart); chains in flight are processed again;"
                    + " nothing to do unless it happens without a restart (then report the front-end's version)",
                    name, Integer.toString(lastAvailIdx), Integer.toString(u));
            this.lastAvailIdx = u;
            this.shadowAvailIdx = u;
        }
        this.usedIdx = u;
        this.publishedUsedIdx = u;
        this.signalledUsedIdx = u;
        this.signalledValid = false;
        this.inFlight.clear();
        clearDeferred();
        this.started = true;
    }

    /**
     * Stops processing ({@code GET_VRING_BASE}); returns the base. Publishes any open used batch
     * first — except after a {@link VirtqError#MEMORY_FAULT}: the used ring may be in the pages that
     * faulted, and touching it again would fault again (on whichever thread stops the ring).
     */
    @Override
    public int stop() {
        if (started && brokenReason != VirtqError.MEMORY_FAULT) {
            publishUsed();
        }
        this.started = false;
        return lastAvailIdx;
    }

    @Override
    public boolean started() {
        return started;
    }

    // ------------------------------------------------------------------------------------------
    // Hot path

    /**
     * Takes the next available chain into {@code chain}.
     *
     * @return {@link #CHAIN}, {@link #NONE} (nothing available or stopped) or {@link #BROKEN}
     */
    @Override
    public int next(Chain chain) {
        if (brokenReason != null) {
            return BROKEN;
        }
        if (!started) {
            return NONE;
        }
        int last = lastAvailIdx;
        if (last == shadowAvailIdx) {
            // acquire: ring entries and descriptors the driver wrote before its release of idx are visible below
            int idx = VringAvail.idxAcquire(avail);
            if (((idx - last) & 0xffff) > size) {
                return fail(VirtqError.AVAIL_INDEX_JUMP, "avail.idx=" + idx + " last_avail=" + last + " size=" + size);
            }
            shadowAvailIdx = idx;
            if (idx == last) {
                return NONE;
            }
        }
        if (inFlight.count() >= size) {
            // every descriptor is in a chain the device holds (or, IN_ORDER, completed and held back):
            // a further chain reuses one still in flight
            return fail(VirtqError.IN_FLIGHT_OVERFLOW, "avail.idx=" + shadowAvailIdx + " offers a chain at " + last
                    + " while " + inFlight.count() + " chains (the queue size) are in flight");
        }
        int head = VringAvail.ring(avail, last & mask);
        chain.reset();
        if (head >= size) {
            return fail(VirtqError.HEAD_OUT_OF_RANGE, "head " + head + " >= size " + size + " at avail " + last);
        }
        int r = walk(chain, head);
        if (r != CHAIN) {
            return r;
        }
        inFlight.push(head, 1);
        readOnly[head] = chain.writableCount == 0;
        chain.head = head;
        lastAvailIdx = (last + 1) & 0xffff;
        return CHAIN;
    }

    /**
     * Number of chains the driver has made available that {@link #next} has not taken yet
     * (acquire-loads avail.idx). Does not validate; {@link #next} does.
     */
    @Override
    public int pending() {
        if (!started || brokenReason != null) {
            return 0;
        }
        return (VringAvail.idxAcquire(avail) - lastAvailIdx) & 0xffff;
    }

    /** Gives back the last {@code n} chains taken by {@link #next} (not yet used), e.g. when a mergeable RX frame does not fit. */
    @Override
    public void rewind(int n) {
        if (deferred > 0) {
            int live = Math.min(n, inFlight.count());
            for (int k = 0; k < live; k++) {
                int id = inFlight.idFromNewest(k);
                if (id >= 0 && id < size && deferredLen[id] >= 0) {
                    deferredLen[id] = -1;
                    deferred--;
                }
            }
        }
        inFlight.popNewest(n);
        lastAvailIdx = (lastAvailIdx - n) & 0xffff;
    }

    @Override
    public int inFlight() {
        return inFlight.count() - deferred;
    }

    @Override
    public void returnInFlight() {
        int n = inFlight.count();
        if (n == 0) {
            return;
        }
        if ((!inFlight.outOfOrder() && deferred == 0) || !started || brokenReason == VirtqError.MEMORY_FAULT) {
            // (after a memory fault the used ring is not touched again; a restart resumes at used.idx)
            rewind(n);
            return;
        }
        for (int k = 0; k < n && inFlight.count() > 0; k++) {
            int head = inFlight.idAt(0);
            addUsed(head, deferredLen[head] >= 0 ? deferredLen[head] : 0);
        }
        publishUsed();
    }

    private int walk(Chain c, int head) {
        final GuestMemory m = memory;
        MemorySegment table = desc;
        long tableBase = 0;
        int limit = size;
        boolean inIndirect = false;
        boolean sawWritable = false;
        int i = head;
        int count = 0;
        while (true) {
            if (++count > limit) {
                return fail(VirtqError.CHAIN_LOOP, "chain from head " + head + " longer than " + limit
                        + (inIndirect ? " (indirect)" : ""));
            }
            long off = tableBase + (long) i * VringDesc.SIZE;
            // Each field is read exactly once; every check below uses these locals (no double fetch).
            final long addr = VringDesc.addr(table, off);
            final int len = VringDesc.len(table, off);
            final int flags = VringDesc.flags(table, off);
            final int next = VringDesc.next(table, off);

            if ((flags & VringDesc.F_INDIRECT) != 0) {
                if (!indirect) {
                    return fail(VirtqError.INDIRECT_NOT_NEGOTIATED, "indirect descriptor " + i + " (head " + head + ")");
                }
                if (inIndirect) {
                    return fail(VirtqError.NESTED_INDIRECT, "indirect inside indirect table (head " + head + ")");
                }
                if ((flags & VringDesc.F_NEXT) != 0) {
                    return fail(VirtqError.INDIRECT_WITH_NEXT, "indirect descriptor " + i + " has NEXT (head " + head + ")");
                }
                long tableLen = Integer.toUnsignedLong(len);
                if (tableLen == 0 || tableLen % VringDesc.SIZE != 0
                        || tableLen / VringDesc.SIZE > maxIndirectEntries) {
                    return fail(VirtqError.INDIRECT_BAD_LENGTH, "indirect table length " + tableLen + " (head " + head + ")");
                }
                int region = m.findGpa(addr);
                if (region < 0 || m.gpaToHost(addr, tableLen) == GuestMemory.NO_ADDR) {
                    return fail(VirtqError.INDIRECT_OUTSIDE_MEMORY, "indirect table gpa=0x" + Long.toHexString(addr)
                            + " len=" + tableLen + " (head " + head + ")");
                }
                table = m.regionSegment(region);
                tableBase = addr - m.regionGpaFirst(region);
                limit = (int) (tableLen / VringDesc.SIZE);
                inIndirect = true;
                i = 0;
                count = 0;
                continue;
            }

            c.descriptorCount++;
            boolean write = (flags & VringDesc.F_WRITE) != 0;
            if (write) {
                sawWritable = true;
            } else if (sawWritable) {
                return fail(VirtqError.READABLE_AFTER_WRITABLE, "readable descriptor " + i + " after writable (head " + head + ")");
            }
            if (len != 0) {
                int r = addPieces(c, m, addr, Integer.toUnsignedLong(len), write, head);
                if (r != CHAIN) {
                    return r;
                }
            }
            if ((flags & VringDesc.F_NEXT) == 0) {
                return CHAIN;
            }
            if (next >= limit) {
                return fail(VirtqError.NEXT_OUT_OF_RANGE, "next " + next + " >= " + limit + " (head " + head + ")");
            }
            i = next;
        }
    }

    /** Splits {@code [addr, addr+len)} (len &gt; 0) at region boundaries into iovecs. */
    private int addPieces(Chain c, GuestMemory m, long addr, long len, boolean write, int head) {
        if (Long.compareUnsigned(addr + len - 1, addr) < 0) {
            return fail(VirtqError.BUFFER_OUTSIDE_MEMORY, "buffer gpa=0x" + Long.toHexString(addr) + " len=" + len
                    + " overflows 64 bits (head " + head + ")");
        }
        while (len != 0) {
            int region = m.findGpa(addr);
            if (region < 0) {
                return fail(VirtqError.BUFFER_OUTSIDE_MEMORY, "buffer piece gpa=0x" + Long.toHexString(addr) + " len="
                        + len + " outside guest memory (head " + head + ")");
            }
            // regions are < 2^63 bytes, so last - addr + 1 is a positive long
            long room = m.regionGpaLast(region) - addr + 1;
            long piece = Math.min(len, room);
            long host = m.regionHostAddr(region) + (addr - m.regionGpaFirst(region));
            boolean ok = write ? c.addWritable(host, piece) : c.addReadable(host, piece);
            if (!ok) {
                return fail(VirtqError.IOV_OVERFLOW, "chain needs more than " + c.capacity() + " iovecs (head " + head + ")");
            }
            addr += piece;
            len -= piece;
        }
        return CHAIN;
    }

    /**
     * Writes a used element for chain {@code head} with {@code len} bytes written into its
     * writable part (0 for TX chains and for dropped frames). Not visible to the driver until
     * {@link #publishUsed()}.
     */
    @Override
    public void addUsed(int head, int len) {
        if (inOrder && inFlight.count() > 0 && inFlight.oldest() != head) {
            // IN_ORDER: used in the order made available; held back until the older chains complete
            if (head >= 0 && head < size && deferredLen[head] < 0) {
                deferredLen[head] = len;
                deferred++;
            }
            return;
        }
        if (inOrder && head >= 0 && head < size && deferredLen[head] >= 0) {
            deferredLen[head] = -1;
            deferred--;
        }
        putUsed(head, len);
        while (deferred > 0 && inFlight.count() > 0) {
            int o = inFlight.oldest();
            int l = o >= 0 && o < size ? deferredLen[o] : -1;
            if (l < 0) {
                break;
            }
            deferredLen[o] = -1;
            deferred--;
            putUsed(o, l);
        }
    }

    /**
     * Writes the used element of chain {@code head}, or (IN_ORDER, a read-only chain used with
     * length 0) adds it to the open run, whose one element is written when the run ends: at the
     * next element that is not elided, at {@link #publishUsed}, or when a head comes round twice
     * in one run (the driver finds a run's end by its last head, so that head must be unique in
     * it). {@code usedIdx} moves by one per chain either way.
     */
    private void putUsed(int head, int len) {
        inFlight.complete(head);
        if (inOrder && len == 0 && head >= 0 && head < size && readOnly[head]) {
            if (held && runOf[head] == run) {
                flushHeld();
            }
            if (!held) {
                held = true;
                heldSlot = usedIdx;
                run++;
            }
            heldHead = head;
            runOf[head] = run;
        } else {
            if (held) {
                flushHeld();
            }
            VringUsed.putElem(used, usedIdx & mask, head, len);
        }
        usedIdx = (usedIdx + 1) & 0xffff;
    }

    /** Writes the open run's one used element: at its first slot, naming its last head. */
    private void flushHeld() {
        held = false;
        VringUsed.putElem(used, heldSlot & mask, heldHead, 0);
    }

    /** Release-stores {@code used.idx}, publishing every element added since the last publish. */
    @Override
    public void publishUsed() {
        if (held) {
            flushHeld();
        }
        int u = usedIdx;
        if (u != publishedUsedIdx) {
            DirtyLog log = usedLog;
            if (log != null) {
                // the elements' pages are marked before the index that hands them to the driver
                logUsedElements(log, publishedUsedIdx, u);
            }
            // release: the used elements written above become visible before the new index
            VringUsed.idxRelease(used, u);
            publishedUsedIdx = u;
            if (log != null) {
                logUsed(log, VringUsed.IDX_OFFSET, Short.BYTES);
            }
        }
    }

    /** Marks the used elements of slots {@code from} (inclusive) to {@code to} (exclusive, 16-bit, wrapping). */
    private void logUsedElements(DirtyLog log, int from, int to) {
        int n = (to - from) & 0xffff;
        int first = from & mask;
        int run = Math.min(n, size - first);
        logUsed(log, VringUsed.elemOffset(first), (long) run * VringUsed.ELEMENT_SIZE);
        if (run < n) {
            logUsed(log, VringUsed.elemOffset(0), (long) (n - run) * VringUsed.ELEMENT_SIZE);
        }
    }

    /**
     * Whether the driver wants a call for what was published since the last decision: with
     * EVENT_IDX, whether {@code used.idx} crossed {@code used_event}; without, whether
     * VRING_AVAIL_F_NO_INTERRUPT is clear. Call after {@link #publishUsed()}, once per batch.
     */
    @Override
    public boolean needsCall() {
        int now = publishedUsedIdx;
        int old = signalledUsedIdx;
        if (signalledValid && now == old) {
            return false;
        }
        // full fence (store->load): our release of used.idx must be visible before we read the
        // driver's used_event/flags, else the driver can re-arm after reading the old used.idx
        // and we skip the call: a lost wake-up (Linux: smp_mb() in vhost_notify).
        VarHandle.fullFence();
        boolean valid = signalledValid;
        signalledUsedIdx = now;
        signalledValid = true;
        if (eventIdx) {
            if (!valid) {
                return true;
            }
            return VringUsed.needEvent(VringAvail.usedEvent(avail, size), now, old);
        }
        return (VringAvail.flags(avail) & VringAvail.F_NO_INTERRUPT) == 0;
    }

    /** Asks the driver not to kick: sets VRING_USED_F_NO_NOTIFY (without EVENT_IDX; with it, a stale avail_event already suppresses kicks). */
    @Override
    public void disableNotification() {
        if (!eventIdx) {
            VringUsed.setFlags(used, VringUsed.F_NO_NOTIFY);
            DirtyLog log = usedLog;
            if (log != null) {
                logUsed(log, VringUsed.FLAGS_OFFSET, Short.BYTES);
            }
        }
    }

    /**
     * Asks the driver to kick on the next available chain, then re-checks the ring.
     *
     * @return true when chains are available (the caller must process them instead of sleeping)
     */
    @Override
    public boolean enableNotification() {
        if (eventIdx) {
            VringUsed.setAvailEvent(used, size, lastAvailIdx);
        } else {
            VringUsed.setFlags(used, 0);
        }
        DirtyLog log = usedLog;
        if (log != null) {
            if (eventIdx) {
                logUsed(log, VringUsed.availEventOffset(size), Short.BYTES);
            } else {
                logUsed(log, VringUsed.FLAGS_OFFSET, Short.BYTES);
            }
        }
        // full fence (store->load): the avail_event/flags store must be visible before we
        // re-read avail.idx, else the driver may read the old value, skip the kick, and we sleep
        // on an index we read before it published: a lost wake-up (Linux: smp_mb() in vhost_enable_notify).
        VarHandle.fullFence();
        return VringAvail.idxAcquire(avail) != lastAvailIdx;
    }

    // ------------------------------------------------------------------------------------------
    // Broken state

    /** The reason this queue is broken, or null. Any thread. */
    @Override
    public VirtqError brokenReason() {
        return brokenReason;
    }

    /** Detail of the first violation, or null. Any thread. */
    @Override
    public String brokenMessage() {
        return brokenMessage;
    }

    /** Number of violations seen (1 once broken). Any thread. */
    @Override
    public long errorCount() {
        return errorCount.get();
    }

    @Override
    public boolean isBroken() {
        return brokenReason != null;
    }

    /**
     * Clears the broken state and forgets the rings (device reset by the front-end, or a fresh
     * start): the next start needs {@link #setAddresses} or {@link #setRings} again. Forgetting the
     * addresses matters: they are the previous front-end's (or the previous start's) virtual
     * addresses, and re-translating them against a new front-end's table in {@link #setMemory}
     * broke the queue of a reconnected QEMU before its own addresses arrived.
     */
    @Override
    public void reset() {
        inFlight.clear();
        clearDeferred();
        usedLog = null;
        brokenReason = null;
        brokenMessage = null;
        started = false;
        lastAvailIdx = 0;
        shadowAvailIdx = 0;
        ringsFromUva = false;
        desc = null;
        avail = null;
        used = null;
    }

    /**
     * Marks the queue broken for a reason found outside the ring walk (e.g. {@link VirtqError#MEMORY_FAULT}):
     * logged, counted and the broken handler called, as for a driver violation; no-op when already broken.
     */
    @Override
    public void markBroken(VirtqError reason, String message) {
        fail(reason, message);
    }

    private int fail(VirtqError reason, String message) {
        errorCount.incrementAndGet();
        if (brokenReason == null) {
            brokenMessage = message;
            brokenReason = reason;
            BrokenQueues.increment();
            LOG.log(System.Logger.Level.WARNING, "{0}: virtqueue broken by the {1}: {2}: {3}; the ring stays"
                    + " stopped until the front-end restarts it (guest driver reload or VM reboot); if it recurs,"
                    + " report the guest kernel and front-end versions with this line", name,
                    reason == VirtqError.MEMORY_FAULT ? "front-end" : "driver", reason, message);
            Consumer<DeviceQueue> h = brokenHandler;
            if (h != null) {
                h.accept(this);
            }
        }
        return BROKEN;
    }

    private void requireSize() {
        if (size == 0) {
            throw new IllegalStateException(name + ": queue size not set");
        }
    }

    private static void checkRing(String what, MemorySegment seg, long minSize, int align) {
        if (seg.byteSize() < minSize) {
            throw new IllegalArgumentException(what + " ring has " + seg.byteSize() + " bytes, needs " + minSize);
        }
        if (seg.address() % align != 0) {
            throw new IllegalArgumentException(what + " ring at 0x" + Long.toHexString(seg.address())
                    + " not aligned to " + align);
        }
    }

    @Override
    public String toString() {
        return "SplitVirtqueue[" + name + " size=" + size + " lastAvail=" + lastAvailIdx + " used=" + usedIdx
                + (brokenReason != null ? " BROKEN " + brokenReason : "") + "]";
    }
}
