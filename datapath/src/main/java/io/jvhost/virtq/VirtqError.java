package io.jvhost.virtq;

/**
 * Why a virtqueue was marked broken. Every reason is something only a buggy or hostile driver
 * (guest) or front-end can cause; a broken queue stops processing and never touches memory outside the guest's
 * regions. A buffer that is merely too small or too large for a frame is <em>not</em> listed:
 * that frame is dropped and the chain returned with used length 0.
 */
public enum VirtqError {
    /** A head index taken from the avail ring is &ge; the queue size. */
    HEAD_OUT_OF_RANGE,
    /** A {@code next} index is &ge; the queue size (or the indirect table's length). */
    NEXT_OUT_OF_RANGE,
    /** More descriptors in one chain than the table holds: a loop. */
    CHAIN_LOOP,
    /** An indirect descriptor inside an indirect table. */
    NESTED_INDIRECT,
    /** An indirect descriptor that also has NEXT set (the spec forbids it). */
    INDIRECT_WITH_NEXT,
    /** An indirect descriptor although VIRTIO_RING_F_INDIRECT_DESC was not negotiated. */
    INDIRECT_NOT_NEGOTIATED,
    /** Indirect table length zero, not a multiple of 16 or larger than allowed. */
    INDIRECT_BAD_LENGTH,
    /** Indirect table not inside one guest memory region. */
    INDIRECT_OUTSIDE_MEMORY,
    /** A buffer's address or address+length outside every region or overflowing 64 bits. */
    BUFFER_OUTSIDE_MEMORY,
    /** A device-readable descriptor after a device-writable one. */
    READABLE_AFTER_WRITABLE,
    /**
     * {@code avail.idx} moved by more than the queue size since the last processed entry, or offers
     * a chain while the queue size's worth of chains is in flight.
     */
    AVAIL_INDEX_JUMP,
    /**
     * More chains in flight than the ring has descriptors: the driver made a chain available again
     * before the device used it.
     */
    IN_FLIGHT_OVERFLOW,
    /** More buffer pieces in one chain than the iovec array holds. */
    IOV_OVERFLOW,
    /**
     * Packed ring: a buffer id &ge; the queue size, or one already in flight (the driver reused it
     * before the device returned it).
     */
    BAD_BUFFER_ID,
    /**
     * Packed ring: a descriptor inside a chain (after an available head) whose AVAIL/USED flags do
     * not mark it available for the wrap counter at its slot: a chain published half-written, or
     * running into slots the device has not returned.
     */
    DESC_NOT_AVAILABLE,
    /** Packed ring: the driver's event-suppression {@code off_wrap} names a slot &ge; the queue size, or its flags are reserved. */
    BAD_EVENT_SUPPRESSION,
    /** Ring addresses outside guest memory or misaligned. */
    BAD_RING_ADDRESS,
    /**
     * Guest memory behind a mapped region faulted (SIGBUS in a Java access, EFAULT from the kernel):
     * the front-end shrank a file it passed after we mapped it ({@code io.jvhost.memory.MemoryFault}).
     */
    MEMORY_FAULT
}
