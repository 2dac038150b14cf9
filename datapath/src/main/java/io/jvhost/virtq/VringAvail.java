package io.jvhost.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Layout of the split-ring driver area, {@code struct virtq_avail} (virtio 1.x §2.7.6):
 * <pre>
 *   le16 flags;              // VIRTQ_AVAIL_F_NO_INTERRUPT
 *   le16 idx;                // free-running, wraps at 65536
 *   le16 ring[queueSize];    // chain heads
 *   le16 used_event;         // only with VIRTIO_RING_F_EVENT_IDX
 * </pre>
 * The driver writes ring entries, then release-stores {@code idx}; the device acquire-loads
 * {@code idx} and only then reads ring entries: {@link #idxAcquire} / {@link #idxRelease} name that.
 */
public final class VringAvail {
    public static final int ALIGN = 2;
    public static final long FLAGS_OFFSET = 0;
    public static final long IDX_OFFSET = 2;
    public static final long RING_OFFSET = 4;
    public static final int ELEMENT_SIZE = 2;

    /** Driver asks the device not to interrupt (call) it; a hint, ignored with EVENT_IDX. */
    public static final int F_NO_INTERRUPT = 1;

    private static final ValueLayout.OfShort LE_SHORT = VringDesc.LE_SHORT;
    /**
     * Naturally aligned little-endian 16-bit layout for the fields both sides access concurrently:
     * an aligned 16-bit access is single-copy atomic; the spec's ring alignment (checked when rings
     * are set) guarantees the fields are 2-aligned.
     */
    private static final ValueLayout.OfShort LE_SHORT_ALIGNED = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    private VringAvail() {
    }

    /*
     * Shared 16-bit fields are accessed as plain loads/stores with explicit fences (same ordering as
     * getAcquire/setRelease; an aligned 16-bit plain access is single-copy atomic), never with
     * VarHandle atomic modes. Reason: guest memory can vanish under the mapping (a front-end shrinks
     * its memfd) and JDK 25 aborts the whole JVM (assembler_x86.cpp ShouldNotReachHere in the SIGBUS
     * handler) when the fault hits a not-yet-compiled setRelease/setOpaque/setVolatile of a short
     * (Unsafe.putShortVolatile's native stub), where plain accesses raise the InternalError the worker
     * turns into a broken queue. docs/VHOST-USER.md, "Hostile front-end: shrunk memory".
     */
    private static int loadAcquire(MemorySegment ring, long offset) {
        int v = Short.toUnsignedInt(ring.get(LE_SHORT_ALIGNED, offset));
        VarHandle.acquireFence(); // acquire: later loads/stores are not reordered before this load
        return v;
    }

    private static void storeRelease(MemorySegment ring, long offset, int value) {
        VarHandle.releaseFence(); // release: earlier loads/stores are not reordered after this store
        ring.set(LE_SHORT_ALIGNED, offset, (short) value);
    }

    /** Bytes of the avail ring for {@code queueSize} entries, including {@code used_event}. */
    public static long sizeOf(int queueSize) {
        return RING_OFFSET + (long) ELEMENT_SIZE * queueSize + 2;
    }

    public static long ringOffset(int slot) {
        return RING_OFFSET + (long) ELEMENT_SIZE * slot;
    }

    /** Offset of {@code used_event}, right after the ring. */
    public static long usedEventOffset(int queueSize) {
        return RING_OFFSET + (long) ELEMENT_SIZE * queueSize;
    }

    /** Acquire-load of {@code idx}: ring entries written before the driver's release are visible after. */
    public static int idxAcquire(MemorySegment avail) {
        return loadAcquire(avail, IDX_OFFSET);
    }

    /** Release-store of {@code idx}: ring entries and descriptors written before become visible first. */
    public static void idxRelease(MemorySegment avail, int idx) {
        storeRelease(avail, IDX_OFFSET, idx);
    }

    /** Acquire-load of {@code flags} (single-copy atomic; acquire is stronger than the opaque it needs). */
    public static int flags(MemorySegment avail) {
        return loadAcquire(avail, FLAGS_OFFSET);
    }

    /** Release-store of {@code flags} (driver). */
    public static void setFlags(MemorySegment avail, int flags) {
        storeRelease(avail, FLAGS_OFFSET, flags);
    }

    /** Plain read of ring slot {@code slot}; call after {@link #idxAcquire}. */
    public static int ring(MemorySegment avail, int slot) {
        return Short.toUnsignedInt(avail.get(LE_SHORT, ringOffset(slot)));
    }

    /** Plain write of ring slot {@code slot} (driver; published by {@link #idxRelease}). */
    public static void setRing(MemorySegment avail, int slot, int head) {
        avail.set(LE_SHORT, ringOffset(slot), (short) head);
    }

    /** Acquire-load of {@code used_event} (callers add the store-load fence the protocol needs). */
    public static int usedEvent(MemorySegment avail, int queueSize) {
        return loadAcquire(avail, usedEventOffset(queueSize));
    }

    /** Release-store of {@code used_event} (driver). */
    public static void setUsedEvent(MemorySegment avail, int queueSize, int value) {
        storeRelease(avail, usedEventOffset(queueSize), value);
    }
}
