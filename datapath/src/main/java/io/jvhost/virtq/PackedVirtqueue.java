package io.jvhost.virtq;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtio.VirtioFeatures;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * Device side of one packed virtqueue (virtio 1.2 §2.8): one descriptor ring shared by both sides,
 * a driver and a device event-suppression area. Same contract as {@link SplitVirtqueue} behind
 * {@link DeviceQueue}.
 *
 * <h2>Ring positions</h2>
 * The device keeps two positions with their wrap counters: where the next available chain starts
 * ({@code availIdx}/{@code availWrap}, the driver's wrap counter as the device expects it) and where
 * the next used descriptor goes ({@code usedIdx}/{@code usedWrap}). A chain of {@code n} ring
 * descriptors moves the first by {@code n}; its used descriptor moves the second by the same
 * {@code n} (the driver finds {@code n} again from the buffer id). Ring sizes need not be powers of
 * two: positions wrap at {@code size}, flipping the counter.
 *
 * <h2>Hostile driver</h2>
 * Each descriptor's fields are copied once into locals (flags first, with acquire) and validated:
 * every descriptor after the head of a chain must be available for the wrap counter at its slot
 * ({@link VirtqError#DESC_NOT_AVAILABLE}: a half-written chain, a wrap counter flipped mid-chain,
 * or a chain running into slots still in flight); a chain takes at most the slots not in flight
 * ({@link VirtqError#CHAIN_LOOP}: NEXT on every slot would wrap forever); buffer ids are below the
 * ring size and not in flight ({@link VirtqError#BAD_BUFFER_ID}); indirect tables (one level,
 * length a non-zero multiple of 16, bounded, inside one region, no NEXT on the ring descriptor, no
 * INDIRECT inside, only when negotiated); buffers inside guest memory; readable before writable;
 * the driver's {@code off_wrap} inside the ring ({@link VirtqError#BAD_EVENT_SUPPRESSION}). A
 * descriptor whose flags never mark it available is not a violation: nothing is available.
 *
 * <h2>Memory order</h2>
 * <ul>
 *   <li>The flags of a chain's head are acquire-loaded ({@link PackedDesc#flagsAcquire}) before
 *       anything else of the chain is read; later descriptors' flags likewise.</li>
 *   <li>A used descriptor is written as id and len, then flags. Of the used descriptors added
 *       since the last publish, all but the first get their flags with plain stores; the first's
 *       flags are release-stored last by {@link #publishUsed()}: the driver reads used descriptors
 *       in ring order, so that one store publishes the batch (what DPDK's packed "shadow" flush
 *       does).</li>
 *   <li>{@link #needsCall()} issues a full fence between that release and the load of the driver's
 *       event area, {@link #enableNotification()} one between the store of the device's event
 *       area and the re-load of the next slot's flags (the lost wake-up of {@link SplitVirtqueue}).</li>
 * </ul>
 *
 * <h2>IN_ORDER</h2>
 * With {@code VIRTIO_F_IN_ORDER} buffers are used in the order they were made available: a
 * completion that overtakes an older chain in flight is held back (its length remembered) until
 * the older ones complete. A run of consecutive device-read-only buffers (TX) completed with
 * length 0 is written as one used descriptor carrying the id of the run's last buffer, at the
 * run's first slot, and the used position skips the whole run (virtio 1.2 §2.8.21 / "In-order").
 * Buffers with a writable part always get their own used descriptor: the driver learns their
 * length only from it (Linux reports an elided buffer's whole length).
 *
 * <h2>Threading</h2>
 * As {@link SplitVirtqueue}: owned by one worker; hot path lock- and allocation-free.
 */
public final class PackedVirtqueue implements DeviceQueue {

    private static final System.Logger LOG = System.getLogger(PackedVirtqueue.class.getName());

    private final String name;

    private int size;
    private int maxIndirectEntries;
    private MemorySegment desc;
    /** Driver event suppression (driver writes, device reads). */
    private MemorySegment driverEvent;
    /** Device event suppression (device writes, driver reads). */
    private MemorySegment deviceEvent;
    private GuestMemory memory = GuestMemory.empty();
    private long descUva;
    private long driverUva;
    private long deviceUva;
    private boolean ringsFromUva;

    private boolean eventIdx;
    private boolean indirect;
    private boolean inOrder;

    private boolean started;
    /** Next slot to take a chain from, and the driver wrap counter expected there. */
    private int availIdx;
    private boolean availWrap;
    /** Next slot to write a used descriptor to, and the device wrap counter there. */
    private int usedIdx;
    private boolean usedWrap;
    /** Ring slots occupied by chains in flight (their used descriptors not yet written). */
    private int slotsInFlight;

    /** Used descriptors written since the last publish, the first of which still lacks its flags. */
    private int batchCount;
    private int batchFirstSlot;
    private int batchFirstFlags;

    /** IN_ORDER: an elided run of read-only buffers, whose one used descriptor is not written yet. */
    private boolean held;
    private int heldId;
    private int heldSlot;
    private boolean heldWrap;

    /** Per buffer id: in flight; (IN_ORDER) read-only; (IN_ORDER) deferred completion length or -1. */
    private boolean[] idBusy = new boolean[0];
    private boolean[] readOnly = new boolean[0];
    private int[] deferredLen = new int[0];
    private int deferred;

    /** Used position at the last call decision, and whether anything was published since. */
    private int signalledIdx;
    private boolean signalledValid;
    private boolean publishedSinceSignal;

    private DirtyLog ringLog;
    /** Where the used position is written down for a restarted back-end, or null. */
    private RingJournal.Slot journal;
    /** The base exactly as SET_VRING_BASE sent it (the journal compares it with the last start's). */
    private int givenBase;

    private volatile VirtqError brokenReason;
    private volatile String brokenMessage;
    private final AtomicLong errorCount = new AtomicLong();
    private Consumer<DeviceQueue> brokenHandler;
    private final InFlight inFlight = new InFlight();

    /** @param name used in log lines, e.g. "vhost0 rx0" */
    public PackedVirtqueue(String name) {
        this.name = name;
    }

    // ------------------------------------------------------------------------------------------
    // Configuration (control path; queue stopped)

    @Override
    public RingLayout layout() {
        return RingLayout.PACKED;
    }

    /** Sets the ring size (1..32768, any value). */
    @Override
    public void setSize(int queueSize) {
        String bad = RingLayout.PACKED.checkSize(queueSize);
        if (bad != null) {
            throw new IllegalArgumentException("queue " + bad);
        }
        this.size = queueSize;
        this.maxIndirectEntries = Math.max(queueSize, Chain.UIO_MAXIOV);
        inFlight.ensureCapacity(queueSize);
        if (idBusy.length < queueSize) {
            idBusy = new boolean[queueSize];
            readOnly = new boolean[queueSize];
            deferredLen = new int[queueSize];
        }
        clearIds();
    }

    private void clearIds() {
        Arrays.fill(idBusy, false);
        Arrays.fill(deferredLen, -1);
        deferred = 0;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public void setFeatures(long features) {
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.RING_F_EVENT_IDX);
        this.indirect = VirtioFeatures.has(features, VirtioFeatures.RING_F_INDIRECT_DESC);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER);
    }

    @Override
    public boolean inOrder() {
        return inOrder;
    }

    @Override
    public void setBrokenHandler(Consumer<DeviceQueue> handler) {
        this.brokenHandler = handler;
    }

    @Override
    public void setRings(MemorySegment descRing, MemorySegment driverArea, MemorySegment deviceArea) {
        requireSize();
        checkArea("descriptor ring", descRing, RingLayout.PACKED.descBytes(size), PackedDesc.ALIGN);
        checkArea("driver area", driverArea, PackedEvent.SIZE, PackedEvent.ALIGN);
        checkArea("device area", deviceArea, PackedEvent.SIZE, PackedEvent.ALIGN);
        this.desc = descRing;
        this.driverEvent = driverArea;
        this.deviceEvent = deviceArea;
        this.ringsFromUva = false;
    }

    @Override
    public boolean setMemory(GuestMemory table) {
        this.memory = table;
        if (!ringsFromUva) {
            return true;
        }
        if (!started && !covers(table)) {
            // as SplitVirtqueue: a stopped ring's stale translations are dropped, not an error
            ringsFromUva = false;
            desc = null;
            driverEvent = null;
            deviceEvent = null;
            return true;
        }
        return translateRings();
    }

    private boolean covers(GuestMemory m) {
        return m.uvaToSegment(descUva, RingLayout.PACKED.descBytes(size)) != null
                && m.uvaToSegment(driverUva, PackedEvent.SIZE) != null
                && m.uvaToSegment(deviceUva, PackedEvent.SIZE) != null;
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public boolean setAddresses(long descUserAddr, long driverUserAddr, long deviceUserAddr) {
        requireSize();
        this.descUva = descUserAddr;
        this.driverUva = driverUserAddr;
        this.deviceUva = deviceUserAddr;
        this.ringsFromUva = true;
        return translateRings();
    }

    private boolean translateRings() {
        GuestMemory m = memory;
        MemorySegment d = m.uvaToSegment(descUva, RingLayout.PACKED.descBytes(size));
        MemorySegment dr = m.uvaToSegment(driverUva, PackedEvent.SIZE);
        MemorySegment dv = m.uvaToSegment(deviceUva, PackedEvent.SIZE);
        if (d == null || dr == null || dv == null || d.address() % PackedDesc.ALIGN != 0
                || dr.address() % PackedEvent.ALIGN != 0 || dv.address() % PackedEvent.ALIGN != 0) {
            fail(VirtqError.BAD_RING_ADDRESS, "packed ring desc=0x" + Long.toHexString(descUva) + " driver=0x"
                    + Long.toHexString(driverUva) + " device=0x" + Long.toHexString(deviceUva) + " size=" + size
                    + " not inside one region each / misaligned");
            return false;
        }
        this.desc = d;
        this.driverEvent = dr;
        this.deviceEvent = dv;
        return true;
    }

    /**
     * Dirty logging of the ring writes: the used descriptors (in the descriptor ring) and the
     * device event area. Both are logged by their own guest-physical address, found from the
     * mapping ({@link DirtyLog#markHost}), not from {@code logGuestAddr}: for a packed ring the
     * used descriptors do not live at the address a front-end gives as {@code log_guest_addr}
     * (QEMU passes its "used" area, which for a packed ring is the device event area).
     */
    @Override
    public void setDirtyLog(DirtyLog log, boolean logRing, long logGuestAddr) {
        this.ringLog = logRing ? log : null;
    }

    /**
     * {@code SET_VRING_BASE}: bits 0-14 the next avail slot, bit 15 the driver wrap counter there;
     * bits 16-30 / 31 the used slot and its wrap counter (QEMU's
     * {@code virtio_queue_packed_get_last_avail_idx} sends both halves, DPDK 22.11 reads only the
     * low one). A high half of 0 means "not given" (used = avail): DPDK answers GET_VRING_BASE with
     * the low half only, and QEMU then keeps 0 there. A used position behind the avail one: the
     * device resumes at the used position (chains between were in flight and are taken again).
     */
    @Override
    public void setBase(int num) {
        this.givenBase = num;
        int a = num & PackedEvent.OFF_MASK;
        if (size != 0 && a >= size) {
            throw new IllegalArgumentException(name + ": " + RingLayout.PACKED.checkBase(num, size));
        }
        this.availIdx = a;
        this.availWrap = (num & (1 << PackedEvent.WRAP_SHIFT)) != 0;
        int hi = num >>> 16;
        if (hi != 0) {
            int u = hi & PackedEvent.OFF_MASK;
            if (size != 0 && u >= size) {
                throw new IllegalArgumentException(name + ": " + RingLayout.PACKED.checkBase(num, size));
            }
            this.usedIdx = u;
            this.usedWrap = (hi & (1 << PackedEvent.WRAP_SHIFT)) != 0;
        } else {
            this.usedIdx = a;
            this.usedWrap = availWrap;
        }
    }

    /**
     * {@code GET_VRING_BASE}: the next avail slot and driver wrap counter in the low 16 bits, the
     * used slot and device wrap counter in the high 16 (equal to the low half once the engines gave
     * every chain back): QEMU stores both halves ({@code virtio_queue_packed_set_last_avail_idx}),
     * DPDK reads the low one.
     */
    @Override
    public int base() {
        return PackedEvent.offWrap(availIdx, availWrap) | PackedEvent.offWrap(usedIdx, usedWrap) << 16;
    }

    /**
     * Where the used position is written down at each start and before each publish, so that a
     * back-end restarted after this one died resumes where it stopped ({@link RingJournal}); null:
     * nowhere. Set while stopped.
     */
    public void setJournal(RingJournal.Slot slot) {
        this.journal = slot;
    }

    /**
     * Starts at the used position (chains between it and the avail position were in flight at a
     * stop that could not return them: they are taken again). A packed ring has no index in memory
     * to check the base against, and its flags cannot tell the driver's front from slots the device
     * consumed that still look available (the non-head slots of multi-descriptor chains, the
     * buffers of an elided IN_ORDER run) — a base of 0 is slot 0 of an even lap, not a front-end
     * that lost track (docs/DATAPATH.md, "Packed rings"). So the base is trusted, except when the
     * {@link RingJournal} shows the front-end re-sending the base of the last start of this same
     * ring after the device moved on: the front-end lost track (the back-end died, GET_VRING_BASE
     * never answered) and the device resumes where the journal says.
     */
    @Override
    public void start() {
        if (desc == null) {
            throw new IllegalStateException(name + ": rings not set");
        }
        if (usedIdx != availIdx || usedWrap != availWrap) {
            availIdx = usedIdx;
            availWrap = usedWrap;
        }
        boolean republished = false;
        RingJournal.Slot j = journal;
        if (j != null) {
            republished = resumeFromJournal(j);
            j.begin(memoryId(), ringId(descUva, desc), ringId(driverUva, driverEvent), ringId(deviceUva, deviceEvent),
                    size, givenBase, PackedEvent.offWrap(usedIdx, usedWrap));
        }
        inFlight.clear();
        clearIds();
        slotsInFlight = 0;
        batchCount = 0;
        held = false;
        signalledValid = false;
        publishedSinceSignal = republished;
        started = true;
    }

    /** The identity of the file holding the descriptor ring (0: not known, or rings set directly). */
    private long memoryId() {
        int r = ringsFromUva ? memory.findUva(descUva) : GuestMemory.NO_REGION;
        return r == GuestMemory.NO_REGION ? 0 : memory.region(r).fileId();
    }

    /** A ring area's identity for the journal: the front-end's address, or (rings set directly) the mapping's. */
    private long ringId(long uva, MemorySegment area) {
        return ringsFromUva ? uva : area.address();
    }

    /** Resumes where the journal says when the front-end re-sent the last start's base; true when it published a batch. */
    private boolean resumeFromJournal(RingJournal.Slot j) {
        if (!j.resentBase(memoryId(), ringId(descUva, desc), ringId(driverUva, driverEvent), ringId(deviceUva,
                deviceEvent), size, givenBase)) {
            return false;
        }
        int first = j.first();
        int after = j.after();
        int count = j.count();
        if (count > 1 && !inRing(j, count - 1) && inRing(j, count - 2)) {
            // died between the journal and the ring write of the last descriptor: the ring never got it
            after = j.position(count - 1);
            count--;
        }
        if (count == 0 && after == PackedEvent.offWrap(usedIdx, usedWrap)) {
            return false; // the device had not moved: the base is right
        }
        String base = "0x" + Integer.toHexString(givenBase);
        String bad = journalContradiction(j, first, after, count);
        if (bad != null) {
            LOG.log(System.Logger.Level.WARNING, "{0}: the front-end re-sent base {1} of the last start, but the"
                    + " journal does not fit the ring ({2}): resuming at the base; if the ring stalls, reload the"
                    + " guest driver", name, base, bad);
            return false;
        }
        int firstSlot = first & PackedEvent.OFF_MASK;
        boolean firstWrap = (first >>> PackedEvent.WRAP_SHIFT) != 0;
        boolean unpublished = count > 0
                && PackedDesc.isAvail(PackedDesc.flagsAcquire(desc, PackedDesc.offset(firstSlot)), firstWrap);
        if (unpublished) {
            for (int i = 0; i < count; i++) {
                int pos = j.position(i);
                long off = PackedDesc.offset(pos & PackedEvent.OFF_MASK);
                PackedDesc.putUsed(desc, off, j.id(i), j.len(i));
                if (i > 0) {
                    PackedDesc.putFlags(desc, off, PackedDesc.usedFlags((pos >>> PackedEvent.WRAP_SHIFT) != 0));
                }
            }
            // release: the batch becomes visible to the driver with its first descriptor's flags
            PackedDesc.flagsRelease(desc, PackedDesc.offset(firstSlot), PackedDesc.usedFlags(firstWrap));
        }
        LOG.log(System.Logger.Level.WARNING, "{0}: base {1} given again as at the last start, but the device had moved"
                + " on (front-end lost track, e.g. after a back-end restart): resuming at slot {2} wrap {3} as the"
                + " ring journal says{4}; chains in flight are processed again", name, base,
                Integer.toString(after & PackedEvent.OFF_MASK), (after >>> PackedEvent.WRAP_SHIFT) & 1,
                unpublished ? ", after publishing the " + count + " used descriptor(s) the stopped back-end had written"
                        + " but not published" : "");
        usedIdx = after & PackedEvent.OFF_MASK;
        usedWrap = (after >>> PackedEvent.WRAP_SHIFT) != 0;
        availIdx = usedIdx;
        availWrap = usedWrap;
        return unpublished;
    }

    /**
     * Why the journal cannot be where this ring stands, or null: positions or ids out of the ring,
     * or the slot it resumes at already used by the device in this lap (its USED bit equal to the
     * device's counter there).
     */
    private String journalContradiction(RingJournal.Slot j, int first, int after, int count) {
        if ((first & PackedEvent.OFF_MASK) >= size || (after & PackedEvent.OFF_MASK) >= size || count > size) {
            return "positions 0x" + Integer.toHexString(first) + " / 0x" + Integer.toHexString(after) + ", " + count
                    + " descriptors, ring size " + size;
        }
        for (int i = 0; i < count; i++) {
            if ((j.position(i) & PackedEvent.OFF_MASK) >= size || j.id(i) >= size) {
                return "descriptor " + i + " at 0x" + Integer.toHexString(j.position(i)) + " id " + j.id(i);
            }
        }
        if (count > 0 && !inRing(j, count - 1)) {
            int pos = j.position(count - 1);
            long off = PackedDesc.offset(pos & PackedEvent.OFF_MASK);
            return "its last used descriptor (slot " + (pos & PackedEvent.OFF_MASK) + " wrap " + (pos >>> PackedEvent.WRAP_SHIFT)
                    + ", id " + j.id(count - 1) + ", length " + j.len(count - 1) + ") is not in the ring (flags 0x"
                    + Integer.toHexString(PackedDesc.flagsAcquire(desc, off)) + ", id " + PackedDesc.id(desc, off)
                    + ", length " + PackedDesc.len(desc, off) + "): another driver's ring at the same place?";
        }
        if (count > 0 && (after & PackedEvent.OFF_MASK) == (first & PackedEvent.OFF_MASK)) {
            return null; // a batch of the whole ring: the slot is the batch's own first
        }
        boolean wrap = (after >>> PackedEvent.WRAP_SHIFT) != 0;
        int flags = PackedDesc.flagsAcquire(desc, PackedDesc.offset(after & PackedEvent.OFF_MASK));
        if (((flags & PackedDesc.F_USED) != 0) == wrap) {
            return "slot " + (after & PackedEvent.OFF_MASK) + " is already used in that lap (flags 0x"
                    + Integer.toHexString(flags) + ")";
        }
        return null;
    }

    /**
     * Whether used descriptor {@code i} of the journal's batch is in the ring as the device wrote
     * it: id and length in place with the used flags of its lap (or, the batch's first, the flags
     * still to come), or the slot already made available again by the driver for the next lap.
     */
    private boolean inRing(RingJournal.Slot j, int i) {
        int pos = j.position(i);
        int slot = pos & PackedEvent.OFF_MASK;
        if (slot >= size) {
            return false;
        }
        boolean wrap = (pos >>> PackedEvent.WRAP_SHIFT) != 0;
        long off = PackedDesc.offset(slot);
        int f = PackedDesc.flagsAcquire(desc, off);
        boolean a = (f & PackedDesc.F_AVAIL) != 0;
        boolean u = (f & PackedDesc.F_USED) != 0;
        if (a != wrap && u == wrap) {
            return true; // the driver consumed it and offered the slot again
        }
        boolean written = PackedDesc.id(desc, off) == j.id(i) && PackedDesc.len(desc, off) == j.len(i);
        return written && a == wrap && (u == wrap || i == 0);
    }

    private boolean isAvailAt(int slot, boolean wrap) {
        return PackedDesc.isAvail(PackedDesc.flagsAcquire(desc, PackedDesc.offset(slot)), wrap);
    }

    @Override
    public int stop() {
        if (started && brokenReason != VirtqError.MEMORY_FAULT) {
            publishUsed();
        }
        this.started = false;
        return base();
    }

    @Override
    public boolean started() {
        return started;
    }

    // ------------------------------------------------------------------------------------------
    // Hot path

    @Override
    public int next(Chain chain) {
        if (brokenReason != null) {
            return BROKEN;
        }
        if (!started) {
            return NONE;
        }
        final MemorySegment ring = desc;
        int slot = availIdx;
        boolean wrap = availWrap;
        long off = PackedDesc.offset(slot);
        // acquire: the chain's descriptors, written before the driver's release of this flags word, are visible below
        int flags = PackedDesc.flagsAcquire(ring, off);
        if (!PackedDesc.isAvail(flags, wrap)) {
            return NONE;
        }
        chain.reset();
        final GuestMemory m = memory;
        final int room = size - slotsInFlight;
        final int headSlot = slot;
        int taken = 0;
        boolean sawWritable = false;
        int id;
        while (true) {
            if (++taken > room) {
                return fail(VirtqError.CHAIN_LOOP, "chain from slot " + headSlot + " longer than the " + room
                        + " slots not in flight (size " + size + ")");
            }
            if (taken > 1) {
                flags = PackedDesc.flagsAcquire(ring, off);
                if (!PackedDesc.isAvail(flags, wrap)) {
                    return fail(VirtqError.DESC_NOT_AVAILABLE, "descriptor at slot " + slot + " (chain from slot "
                            + headSlot + ") has flags 0x" + Integer.toHexString(flags) + ", not available for wrap "
                            + (wrap ? 1 : 0));
                }
            }
            // Each field is read exactly once; every check below uses these locals (no double fetch).
            final long addr = PackedDesc.addr(ring, off);
            final int len = PackedDesc.len(ring, off);
            final int bufId = PackedDesc.id(ring, off);
            if ((flags & PackedDesc.F_INDIRECT) != 0) {
                if (!indirect) {
                    return fail(VirtqError.INDIRECT_NOT_NEGOTIATED, "indirect descriptor at slot " + slot);
                }
                if ((flags & PackedDesc.F_NEXT) != 0) {
                    return fail(VirtqError.INDIRECT_WITH_NEXT, "indirect descriptor at slot " + slot + " has NEXT");
                }
                int r = walkIndirect(chain, m, addr, len, sawWritable, headSlot);
                if (r != CHAIN) {
                    return r;
                }
                id = bufId;
                break;
            }
            chain.descriptorCount++;
            boolean write = (flags & PackedDesc.F_WRITE) != 0;
            if (write) {
                sawWritable = true;
            } else if (sawWritable) {
                return fail(VirtqError.READABLE_AFTER_WRITABLE, "readable descriptor at slot " + slot
                        + " after writable (chain from slot " + headSlot + ")");
            }
            if (len != 0) {
                int r = addPieces(chain, m, addr, Integer.toUnsignedLong(len), write, headSlot);
                if (r != CHAIN) {
                    return r;
                }
            }
            if ((flags & PackedDesc.F_NEXT) == 0) {
                id = bufId;
                break;
            }
            if (++slot == size) {
                slot = 0;
                wrap = !wrap;
            }
            off = PackedDesc.offset(slot);
        }
        if (id >= size) {
            return fail(VirtqError.BAD_BUFFER_ID, "buffer id " + id + " >= size " + size + " (chain from slot "
                    + headSlot + ")");
        }
        if (idBusy[id]) {
            return fail(VirtqError.BAD_BUFFER_ID, "buffer id " + id + " reused while in flight (chain from slot "
                    + headSlot + ")");
        }
        if (++slot == size) {
            slot = 0;
            wrap = !wrap;
        }
        availIdx = slot;
        availWrap = wrap;
        idBusy[id] = true;
        readOnly[id] = chain.writableCount == 0;
        slotsInFlight += taken;
        chain.head = id;
        inFlight.push(id, taken);
        return CHAIN;
    }

    /** Walks the indirect table at {@code addr} (the last descriptor of a chain). */
    private int walkIndirect(Chain c, GuestMemory m, long addr, int len, boolean sawWritable, int headSlot) {
        long tableLen = Integer.toUnsignedLong(len);
        if (tableLen == 0 || tableLen % PackedDesc.SIZE != 0 || tableLen / PackedDesc.SIZE > maxIndirectEntries) {
            return fail(VirtqError.INDIRECT_BAD_LENGTH, "indirect table length " + tableLen + " (chain from slot "
                    + headSlot + ")");
        }
        int region = m.findGpa(addr);
        if (region < 0 || m.gpaToHost(addr, tableLen) == GuestMemory.NO_ADDR) {
            return fail(VirtqError.INDIRECT_OUTSIDE_MEMORY, "indirect table gpa=0x" + Long.toHexString(addr) + " len="
                    + tableLen + " (chain from slot " + headSlot + ")");
        }
        MemorySegment table = m.regionSegment(region);
        long base = addr - m.regionGpaFirst(region);
        int n = (int) (tableLen / PackedDesc.SIZE);
        // Entries follow one another (virtio 1.2 §2.8.19): NEXT and the id are ignored in the table.
        for (int i = 0; i < n; i++) {
            long off = base + (long) i * PackedDesc.SIZE;
            final long a = PackedDesc.addr(table, off);
            final int l = PackedDesc.len(table, off);
            final int f = PackedDesc.flags(table, off);
            if ((f & PackedDesc.F_INDIRECT) != 0) {
                return fail(VirtqError.NESTED_INDIRECT, "indirect inside indirect table entry " + i
                        + " (chain from slot " + headSlot + ")");
            }
            c.descriptorCount++;
            boolean write = (f & PackedDesc.F_WRITE) != 0;
            if (write) {
                sawWritable = true;
            } else if (sawWritable) {
                return fail(VirtqError.READABLE_AFTER_WRITABLE, "readable indirect entry " + i
                        + " after writable (chain from slot " + headSlot + ")");
            }
            if (l != 0) {
                int r = addPieces(c, m, a, Integer.toUnsignedLong(l), write, headSlot);
                if (r != CHAIN) {
                    return r;
                }
            }
        }
        return CHAIN;
    }

    /** Splits {@code [addr, addr+len)} (len &gt; 0) at region boundaries into iovecs. */
    private int addPieces(Chain c, GuestMemory m, long addr, long len, boolean write, int headSlot) {
        if (Long.compareUnsigned(addr + len - 1, addr) < 0) {
            return fail(VirtqError.BUFFER_OUTSIDE_MEMORY, "buffer gpa=0x" + Long.toHexString(addr) + " len=" + len
                    + " overflows 64 bits (chain from slot " + headSlot + ")");
        }
        while (len != 0) {
            int region = m.findGpa(addr);
            if (region < 0) {
                return fail(VirtqError.BUFFER_OUTSIDE_MEMORY, "buffer piece gpa=0x" + Long.toHexString(addr) + " len="
                        + len + " outside guest memory (chain from slot " + headSlot + ")");
            }
            long room = m.regionGpaLast(region) - addr + 1;
            long piece = Math.min(len, room);
            long host = m.regionHostAddr(region) + (addr - m.regionGpaFirst(region));
            boolean ok = write ? c.addWritable(host, piece) : c.addReadable(host, piece);
            if (!ok) {
                return fail(VirtqError.IOV_OVERFLOW, "chain needs more than " + c.capacity() + " iovecs (chain from slot "
                        + headSlot + ")");
            }
            addr += piece;
            len -= piece;
        }
        return CHAIN;
    }

    /**
     * Chains available and not taken: counts chain ends among the available descriptors from the
     * next slot on (at most the slots not in flight). Not validated; {@link #next} does that.
     */
    @Override
    public int pending() {
        if (!started || brokenReason != null) {
            return 0;
        }
        int slot = availIdx;
        boolean wrap = availWrap;
        int chains = 0;
        for (int k = size - slotsInFlight; k > 0; k--) {
            int f = PackedDesc.flagsAcquire(desc, PackedDesc.offset(slot));
            if (!PackedDesc.isAvail(f, wrap)) {
                break;
            }
            if ((f & PackedDesc.F_NEXT) == 0) {
                chains++;
            }
            if (++slot == size) {
                slot = 0;
                wrap = !wrap;
            }
        }
        return chains;
    }

    @Override
    public void rewind(int n) {
        int live = Math.min(n, inFlight.count());
        for (int k = 0; k < live; k++) {
            int id = inFlight.idFromNewest(k);
            if (id >= 0) {
                idBusy[id] = false;
                if (deferredLen[id] >= 0) {
                    deferredLen[id] = -1;
                    deferred--;
                }
            }
        }
        int slots = inFlight.popNewest(n);
        slotsInFlight = inFlight.count() == 0 ? 0 : Math.max(0, slotsInFlight - slots);
        int a = availIdx - slots;
        if (a < 0) {
            a += size;
            availWrap = !availWrap;
        }
        availIdx = a;
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
            rewind(n);
            return;
        }
        for (int k = 0; k < n && inFlight.count() > 0; k++) {
            int id = inFlight.oldest();
            addUsed(id, deferredLen[id] >= 0 ? deferredLen[id] : 0);
        }
        publishUsed();
    }

    @Override
    public void addUsed(int id, int len) {
        if (id < 0 || id >= size || !idBusy[id]) {
            return; // not in flight: a device bug; writing it would hand the driver a buffer it owns
        }
        if (!inOrder) {
            complete(id, len);
            return;
        }
        if (inFlight.oldest() != id) {
            if (deferredLen[id] < 0) {
                deferredLen[id] = len;
                deferred++;
            }
            return;
        }
        if (deferredLen[id] >= 0) {
            deferredLen[id] = -1;
            deferred--;
        }
        complete(id, len);
        while (deferred > 0 && inFlight.count() > 0) {
            int o = inFlight.oldest();
            int l = deferredLen[o];
            if (l < 0) {
                break;
            }
            deferredLen[o] = -1;
            deferred--;
            complete(o, l);
        }
    }

    /** Writes (or, IN_ORDER, elides) the used descriptor of chain {@code id} and moves the used position. */
    private void complete(int id, int len) {
        int slots = inFlight.complete(id);
        if (slots < 0) {
            return;
        }
        idBusy[id] = false;
        slotsInFlight -= slots;
        boolean elide = inOrder && readOnly[id] && len == 0;
        if (held) {
            if (elide) {
                heldId = id;
                advanceUsed(slots);
                return;
            }
            flushHeld();
        }
        if (elide) {
            held = true;
            heldId = id;
            heldSlot = usedIdx;
            heldWrap = usedWrap;
        } else {
            writeUsed(usedIdx, usedWrap, id, len, positionAfter(slots));
        }
        advanceUsed(slots);
    }

    /** The used position {@code slots} ahead, in the base encoding. */
    private int positionAfter(int slots) {
        int u = usedIdx + slots;
        return u >= size ? PackedEvent.offWrap(u - size, !usedWrap) : PackedEvent.offWrap(u, usedWrap);
    }

    private void advanceUsed(int slots) {
        int u = usedIdx + slots;
        if (u >= size) {
            u -= size;
            usedWrap = !usedWrap;
        }
        usedIdx = u;
    }

    private void flushHeld() {
        held = false;
        writeUsed(heldSlot, heldWrap, heldId, 0, PackedEvent.offWrap(usedIdx, usedWrap));
    }

    /**
     * Writes one used descriptor; its flags wait for {@link #publishUsed} when it opens the batch.
     * The journal gets it first ({@code after}: the used position past its chain).
     */
    private void writeUsed(int slot, boolean wrap, int id, int len, int after) {
        long off = PackedDesc.offset(slot);
        RingJournal.Slot j = journal;
        if (j != null) {
            int pos = PackedEvent.offWrap(slot, wrap);
            j.used(batchCount, pos, id, len, batchCount == 0 ? pos : PackedEvent.offWrap(batchFirstSlot,
                    (batchFirstFlags & PackedDesc.F_AVAIL) != 0), after);
        }
        PackedDesc.putUsed(desc, off, id, len);
        int flags = PackedDesc.usedFlags(wrap);
        if (batchCount == 0) {
            batchFirstSlot = slot;
            batchFirstFlags = flags;
        } else {
            PackedDesc.putFlags(desc, off, flags);
        }
        batchCount++;
        DirtyLog log = ringLog;
        if (log != null) {
            // before the release that hands the descriptor to the driver
            log.markHost(memory, desc.address() + off, PackedDesc.SIZE);
        }
    }

    @Override
    public void publishUsed() {
        if (held) {
            flushHeld();
        }
        if (batchCount == 0) {
            return;
        }
        long off = PackedDesc.offset(batchFirstSlot);
        // release: every used descriptor written since the last publish becomes visible with this flags word
        PackedDesc.flagsRelease(desc, off, batchFirstFlags);
        batchCount = 0;
        publishedSinceSignal = true;
        DirtyLog log = ringLog;
        if (log != null) {
            log.markHost(memory, desc.address() + off, PackedDesc.SIZE);
        }
    }

    /**
     * Whether the driver wants a call for what was published since the last decision: its event
     * area says ENABLE, or (EVENT_IDX) DESC with an {@code off_wrap} the used position crossed.
     * DESC without EVENT_IDX and reserved flag values count as ENABLE (a spurious call is harmless).
     */
    @Override
    public boolean needsCall() {
        if (signalledValid && !publishedSinceSignal) {
            return false;
        }
        // full fence (store->load): the release of the used flags before the load of the driver's area
        VarHandle.fullFence();
        boolean valid = signalledValid;
        int old = signalledIdx;
        int now = usedIdx;
        signalledIdx = now;
        signalledValid = true;
        publishedSinceSignal = false;
        int flags = PackedEvent.flagsAcquire(driverEvent);
        if (flags == PackedEvent.FLAG_DISABLE) {
            return false;
        }
        if (flags != PackedEvent.FLAG_DESC || !eventIdx) {
            return true;
        }
        int offWrap = PackedEvent.offWrap(driverEvent);
        int event = offWrap & PackedEvent.OFF_MASK;
        if (event >= size) {
            fail(VirtqError.BAD_EVENT_SUPPRESSION, "driver event off_wrap 0x" + Integer.toHexString(offWrap)
                    + ": slot not below the size " + size);
            return false;
        }
        if (!valid) {
            return true;
        }
        return needEvent(offWrap, now, usedWrap, old, size);
    }

    /**
     * Whether moving the used position from {@code old} to {@code now} (wrap counter {@code wrap}
     * at {@code now}, less than one lap) crossed the driver's {@code off_wrap}: the positions are
     * unrolled into one lap ending at {@code now} and compared as {@code vring_need_event} does
     * (DPDK's {@code vhost_vring_call_packed}, Linux's {@code vhost_notify}).
     */
    static boolean needEvent(int offWrap, int now, boolean wrap, int old, int size) {
        int event = offWrap & PackedEvent.OFF_MASK;
        boolean eventWrap = (offWrap >>> PackedEvent.WRAP_SHIFT) != 0;
        if (now <= old) {
            old -= size;
        }
        if (eventWrap != wrap) {
            event -= size;
        }
        return VringUsed.needEvent(event & 0xffff, now, old & 0xffff);
    }

    @Override
    public void disableNotification() {
        PackedEvent.set(deviceEvent, 0, PackedEvent.FLAG_DISABLE);
        logDeviceEvent();
    }

    @Override
    public boolean enableNotification() {
        if (eventIdx) {
            PackedEvent.set(deviceEvent, PackedEvent.offWrap(availIdx, availWrap), PackedEvent.FLAG_DESC);
        } else {
            PackedEvent.set(deviceEvent, 0, PackedEvent.FLAG_ENABLE);
        }
        logDeviceEvent();
        // full fence (store->load): the event area store before the re-load of the next slot's flags
        VarHandle.fullFence();
        return started && brokenReason == null && isAvailAt(availIdx, availWrap);
    }

    private void logDeviceEvent() {
        DirtyLog log = ringLog;
        if (log != null) {
            log.markHost(memory, deviceEvent.address(), PackedEvent.SIZE);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Broken state

    @Override
    public VirtqError brokenReason() {
        return brokenReason;
    }

    @Override
    public String brokenMessage() {
        return brokenMessage;
    }

    @Override
    public long errorCount() {
        return errorCount.get();
    }

    @Override
    public boolean isBroken() {
        return brokenReason != null;
    }

    /** As {@link SplitVirtqueue#reset()}. */
    @Override
    public void reset() {
        inFlight.clear();
        clearIds();
        ringLog = null;
        brokenReason = null;
        brokenMessage = null;
        started = false;
        availIdx = 0;
        availWrap = true;
        usedIdx = 0;
        usedWrap = true;
        slotsInFlight = 0;
        batchCount = 0;
        held = false;
        ringsFromUva = false;
        desc = null;
        driverEvent = null;
        deviceEvent = null;
    }

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
            LOG.log(System.Logger.Level.WARNING, "{0}: packed virtqueue broken by the {1}: {2}: {3}; the ring stays"
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

    private static void checkArea(String what, MemorySegment seg, long minSize, int align) {
        if (seg.byteSize() < minSize) {
            throw new IllegalArgumentException(what + " has " + seg.byteSize() + " bytes, needs " + minSize);
        }
        if (seg.address() % align != 0) {
            throw new IllegalArgumentException(what + " at 0x" + Long.toHexString(seg.address()) + " not aligned to "
                    + align);
        }
    }

    @Override
    public String toString() {
        return "PackedVirtqueue[" + name + " size=" + size + " avail=" + availIdx + (availWrap ? "/1" : "/0") + " used="
                + usedIdx + (usedWrap ? "/1" : "/0") + (brokenReason != null ? " BROKEN " + brokenReason : "") + "]";
    }
}
