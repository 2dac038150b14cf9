package io.jvhost.virtq;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;

import java.lang.foreign.MemorySegment;
import java.util.function.Consumer;

/**
 * The device side of one virtqueue, whatever its format: what the TX and RX engines and the
 * worker use. {@link SplitVirtqueue} implements it for split rings, {@link PackedVirtqueue} for
 * packed rings, so the engines exist once. The shape follows rust-vmm's
 * {@code QueueT}: configure while stopped, then take chains, complete them, publish, and decide
 * about notifications.
 *
 * <h2>Chains and buffer ids</h2>
 * {@link #next} fills a {@link Chain} and records it as in flight; {@link Chain#head()} is the id
 * {@link #addUsed} takes back (split: the head descriptor index; packed: the buffer id). Chains are
 * completed in any order ({@link #addUsed}) unless the format or a negotiated feature (IN_ORDER)
 * demands order, which the queue then keeps itself. The last chains taken and not completed can be
 * given back ({@link #rewind}); {@link #returnInFlight} gives back every chain still in flight at a
 * stop, a memory-table swap or a disable, and decides how: rewound when they are the last ones
 * taken, else used with length 0 (rewinding past a chain already used would hand it out twice).
 *
 * <h2>Base</h2>
 * {@link #setBase} / {@link #base} speak the vhost-user encoding of the format
 * ({@link RingLayout#checkBase}); {@link #start} resumes there.
 *
 * <h2>Hostile driver</h2>
 * Every guest-controlled value is validated; a violation marks the queue broken (logged once,
 * counted, the broken handler called once) and {@link #next} returns {@link #BROKEN} from then on.
 * Nothing outside guest memory is ever read or written.
 *
 * <h2>Threading</h2>
 * Owned by one worker thread: every method except {@link #brokenReason()}, {@link #brokenMessage()}
 * and {@link #errorCount()} is called from that thread (or from another thread while no worker
 * runs the queue). The hot-path methods allocate nothing and take no lock.
 */
public interface DeviceQueue {

    /** {@link #next} result: a chain was taken. */
    int CHAIN = 1;
    /** {@link #next} result: nothing available (or the queue is stopped). */
    int NONE = 0;
    /** {@link #next} result: the queue is broken. */
    int BROKEN = -1;

    /** The ring format of this implementation. */
    RingLayout layout();

    // ------------------------------------------------------------------ configuration (stopped)

    /** Sets the ring size ({@link RingLayout#checkSize}). */
    void setSize(int size);

    int size();

    /** Sets the negotiated features; only the ring bits (EVENT_IDX, INDIRECT_DESC, IN_ORDER ...) matter here. */
    void setFeatures(long features);

    /**
     * Whether VIRTIO_F_IN_ORDER was negotiated: chains are used in the order taken (the queue holds
     * back completions that overtake, but an engine must not fill a later buffer with an earlier
     * frame's successor while an earlier buffer stays empty).
     */
    boolean inOrder();

    /**
     * Sets the table used to translate descriptor addresses and re-translates rings given as
     * front-end addresses. On a stopped queue whose rings the table does not cover the stale
     * translations are dropped (not an error).
     *
     * @return false (and the queue marked broken) when a started queue's rings are no longer inside the table
     */
    boolean setMemory(GuestMemory table);

    GuestMemory memory();

    /**
     * Sets the three areas as front-end virtual addresses ({@code SET_VRING_ADDR}) and translates them.
     *
     * @return false (and the queue marked broken) when an area is outside memory or misaligned
     */
    boolean setAddresses(long desc, long driver, long device);

    /** Uses already-mapped areas (tests, the in-process driver); sizes and alignment per {@link #layout()}. */
    void setRings(MemorySegment desc, MemorySegment driver, MemorySegment device);

    /**
     * Dirty logging of the queue's own writes to guest memory (live migration): with {@code log}
     * non-null and {@code logRing} ({@code VHOST_VRING_F_LOG}) every write the queue makes to its
     * rings — split: used elements, {@code used.idx}, {@code used.flags}, {@code avail_event} — marks
     * its pages in {@code log}, after the write and, for what the driver consumes, before the
     * release that publishes it. The ring is logged by guest-physical address
     * {@code logGuestAddr} (the first byte of the device area; packed rings log each write by the
     * guest-physical address of what they wrote, as their used descriptors live in the descriptor ring).
     * {@code log} null: nothing is logged. May change while the queue runs (worker thread).
     */
    void setDirtyLog(DirtyLog log, boolean logRing, long logGuestAddr);

    /** {@code SET_VRING_BASE}: where {@link #start} resumes, in the format's vhost-user encoding. */
    void setBase(int num);

    /** {@code GET_VRING_BASE}: the base a later start resumes from, in the format's vhost-user encoding. */
    int base();

    /** Starts processing at the base (or where the ring itself says the device left off). */
    void start();

    /** Stops processing ({@code GET_VRING_BASE}), publishing any open used batch; returns the base. */
    int stop();

    boolean started();

    /** Clears the broken state and forgets the rings; the next start needs addresses again. */
    void reset();

    /** Called once, on the worker, when the queue becomes broken (signal the error eventfd there). */
    void setBrokenHandler(Consumer<DeviceQueue> handler);

    // ------------------------------------------------------------------ hot path

    /**
     * Takes the next available chain into {@code chain}.
     *
     * @return {@link #CHAIN}, {@link #NONE} (nothing available or stopped) or {@link #BROKEN}
     */
    int next(Chain chain);

    /** Chains made available that {@link #next} has not taken yet (not validated; {@link #next} does that). */
    int pending();

    /** Gives back the last {@code n} chains taken (not yet used): {@link #next} returns them again. */
    void rewind(int n);

    /** Chains taken and not yet completed with {@link #addUsed} or given back. */
    int inFlight();

    /**
     * Gives back every chain in flight (stop, memory swap, RX disable): rewound when they are the
     * last chains taken, else completed with length 0 and published. After a
     * {@link VirtqError#MEMORY_FAULT} the rings are not touched again: always rewound.
     */
    void returnInFlight();

    /**
     * Completes chain {@code id} with {@code len} bytes written into its writable part (0 for TX
     * chains and for dropped frames). Not visible to the driver until {@link #publishUsed()}.
     */
    void addUsed(int id, int len);

    /** Makes every completion since the last publish visible to the driver (one release store). */
    void publishUsed();

    /** {@link #addUsed} + {@link #publishUsed}. */
    default void pushUsed(int id, int len) {
        addUsed(id, len);
        publishUsed();
    }

    /**
     * Whether the driver wants a call for what was published since the last decision (EVENT_IDX
     * or the format's flags). Once per batch, after {@link #publishUsed()}.
     */
    boolean needsCall();

    /** Asks the driver not to kick (where the format has a way to say so). */
    void disableNotification();

    /**
     * Asks the driver to kick on the next available chain, then re-checks the ring.
     *
     * @return true when chains are available (process them instead of sleeping)
     */
    boolean enableNotification();

    // ------------------------------------------------------------------ broken state

    /** The reason this queue is broken, or null. Any thread. */
    VirtqError brokenReason();

    /** Detail of the first violation, or null. Any thread. */
    String brokenMessage();

    /** Number of violations seen. Any thread. */
    long errorCount();

    default boolean isBroken() {
        return brokenReason() != null;
    }

    /** Marks the queue broken for a reason found outside the ring walk (e.g. {@link VirtqError#MEMORY_FAULT}). */
    void markBroken(VirtqError reason, String message);
}
