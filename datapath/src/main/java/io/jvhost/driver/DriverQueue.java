package io.jvhost.driver;

import io.jvhost.virtq.RingLayout;

/**
 * The driver (front-end) side of one virtqueue, whatever its ring format: what {@code GuestNic},
 * the demo and the bench use. {@link DriverVirtqueue} is the split ring (virtio 1.2 §2.7),
 * {@link PackedDriverQueue} the packed ring (§2.8); {@link #create} picks the one the negotiated
 * features select.
 *
 * <p>A buffer is added as a chain of device-readable then device-writable pieces ({@link #add}); the
 * token it returns comes back from {@link #pollUsed} once the device has used the buffer. Added
 * buffers become visible to the device at {@link #publish}; {@link #kickNeeded} then says whether
 * the device asked to be notified.
 *
 * <p>With {@code VIRTIO_F_IN_ORDER} the device may report a batch with one used entry (split) or
 * one used descriptor (packed) for its last buffer: {@link #pollUsed} then returns every buffer of
 * the batch, in the order they were made available, the earlier ones with length 0 (the device did
 * not report theirs; it may batch only buffers it wrote nothing to, i.e. TX).
 *
 * <p>Threading: one thread drives a queue (it adds, kicks and reclaims); the device runs
 * concurrently on the other side of the shared memory.
 */
public interface DriverQueue {

    /**
     * A queue of {@code size} descriptors in {@code mem} in the format the features select
     * ({@code VIRTIO_F_RING_PACKED}), honouring EVENT_IDX, INDIRECT_DESC and IN_ORDER among them.
     *
     * @param maxIndirect entries per indirect table (0: no indirect tables even when negotiated)
     */
    static DriverQueue create(DriverMemory mem, int size, long features, int maxIndirect) {
        return RingLayout.of(features) == RingLayout.PACKED
                ? new PackedDriverQueue(mem, size, features, maxIndirect, 0, true)
                : new DriverVirtqueue(mem, size, features, maxIndirect, 0);
    }

    /** The ring format. */
    RingLayout layout();

    /** Descriptors in the ring. */
    int size();

    /** Guest-physical address of the descriptor area. */
    long descGpa();

    /** Guest-physical address of the driver area (split: available ring; packed: driver event suppression). */
    long driverGpa();

    /** Guest-physical address of the device area (split: used ring; packed: device event suppression). */
    long deviceGpa();

    /**
     * Where the device starts: the vhost-user ring base ({@code SET_VRING_BASE num}) for the next
     * buffer this queue will make available. Split: the avail index; packed: the next ring slot with
     * the driver's wrap counter in bit 15.
     */
    int base();

    /** Descriptors free for {@link #add}. */
    int numFree();

    /** Whether {@link #add} accepts {@code useIndirect} (INDIRECT_DESC negotiated and tables laid out). */
    boolean indirectSupported();

    /**
     * Adds a chain of {@code readable} device-readable buffers followed by {@code writable}
     * device-writable ones ({@code addrs[i]}, {@code lens[i]} guest-physical); not visible to the
     * device before {@link #publish()}.
     *
     * @param useIndirect put the buffers in an indirect table (one ring descriptor)
     * @return the token {@link #pollUsed()} returns for it (in {@code [0, size)}), or -1 when there is no room
     */
    int add(long[] addrs, int[] lens, int readable, int writable, boolean useIndirect);

    /** Makes every buffer added since the last publish visible to the device (release). */
    void publish();

    /** Whether the device wants a kick for what was published since the last decision (full fence first). */
    boolean kickNeeded();

    /**
     * Reclaims one used buffer: {@code (token << 32) | len}, or -1 when none is pending.
     *
     * @throws IllegalStateException when the device reported a buffer that is not in flight
     */
    long pollUsed();

    /** Asks the device not to notify (call) the driver. */
    void disableCallbacks();

    /**
     * Asks the device to call on the next used buffer, then re-checks.
     *
     * @return true when used buffers are pending (reclaim them instead of waiting)
     */
    boolean enableCallbacks();

    /**
     * Like {@link #enableCallbacks} but, with EVENT_IDX, asks for the call only once about
     * {@code n} (at least 1) more buffers are used — never later than that.
     *
     * @return true when {@code n} used buffers are already pending
     */
    boolean enableCallbacksAfter(int n);

    /**
     * Buffers returned so far without a used entry of their own: covered by a later buffer's entry
     * in an IN_ORDER batch (shows that the device batched).
     */
    long inOrderImplied();

    /** The memory this queue lives in. */
    DriverMemory memory();

    /** The shared ring state as the driver sees it (indices or wrap counters, event areas), for stall reports. */
    String describe();
}
