package io.jvhost.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Layout of the split-ring device area, {@code struct virtq_used} (virtio 1.x §2.7.8):
 * <pre>
 *   le16 flags;                       // VIRTQ_USED_F_NO_NOTIFY
 *   le16 idx;                         // free-running, wraps at 65536
 *   struct { le32 id; le32 len; } ring[queueSize];
 *   le16 avail_event;                 // only with VIRTIO_RING_F_EVENT_IDX
 * </pre>
 * The device writes used elements, then release-stores {@code idx}; the driver acquire-loads it.
 */
public final class VringUsed {
    public static final int ALIGN = 4;
    public static final long FLAGS_OFFSET = 0;
    public static final long IDX_OFFSET = 2;
    public static final long RING_OFFSET = 4;
    public static final int ELEMENT_SIZE = 8;
    public static final long ELEM_ID_OFFSET = 0;
    public static final long ELEM_LEN_OFFSET = 4;

    /** Device asks the driver not to kick (notify) it; a hint, ignored with EVENT_IDX. */
    public static final int F_NO_NOTIFY = 1;

    private static final ValueLayout.OfShort LE_SHORT = VringDesc.LE_SHORT;
    private static final ValueLayout.OfInt LE_INT = VringDesc.LE_INT;
    /**
     * Naturally aligned little-endian 16-bit layout for the fields both sides access concurrently:
     * an aligned 16-bit access is single-copy atomic; the spec's ring alignment (checked when rings
     * are set) guarantees the fields are 2-aligned.
     */
    private static final ValueLayout.OfShort LE_SHORT_ALIGNED = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    private VringUsed() {
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

    /** Bytes of the used ring for {@code queueSize} entries, including {@code avail_event}. */
    public static long sizeOf(int queueSize) {
        return RING_OFFSET + (long) ELEMENT_SIZE * queueSize + 2;
    }

    public static long elemOffset(int slot) {
        return RING_OFFSET + (long) ELEMENT_SIZE * slot;
    }

    /** Offset of {@code avail_event}, right after the ring. */
    public static long availEventOffset(int queueSize) {
        return RING_OFFSET + (long) ELEMENT_SIZE * queueSize;
    }

    /** Acquire-load of {@code idx} (driver): used elements written before the device's release are visible after. */
    public static int idxAcquire(MemorySegment used) {
        return loadAcquire(used, IDX_OFFSET);
    }

    /** Release-store of {@code idx} (device): used elements written before become visible first. */
    public static void idxRelease(MemorySegment used, int idx) {
        storeRelease(used, IDX_OFFSET, idx);
    }

    /** Acquire-load of {@code flags} (single-copy atomic; acquire is stronger than the opaque it needs). */
    public static int flags(MemorySegment used) {
        return loadAcquire(used, FLAGS_OFFSET);
    }

    /** Release-store of {@code flags} (device). */
    public static void setFlags(MemorySegment used, int flags) {
        storeRelease(used, FLAGS_OFFSET, flags);
    }

    /** Plain write of a used element (device; published by {@link #idxRelease}). */
    public static void putElem(MemorySegment used, int slot, int id, int len) {
        long off = elemOffset(slot);
        used.set(LE_INT, off + ELEM_ID_OFFSET, id);
        used.set(LE_INT, off + ELEM_LEN_OFFSET, len);
    }

    /** Plain read of a used element's id (driver; after {@link #idxAcquire}). */
    public static int elemId(MemorySegment used, int slot) {
        return used.get(LE_INT, elemOffset(slot) + ELEM_ID_OFFSET);
    }

    /** Plain read of a used element's length (driver; after {@link #idxAcquire}). */
    public static int elemLen(MemorySegment used, int slot) {
        return used.get(LE_INT, elemOffset(slot) + ELEM_LEN_OFFSET);
    }

    /** Acquire-load of {@code avail_event}. */
    public static int availEvent(MemorySegment used, int queueSize) {
        return loadAcquire(used, availEventOffset(queueSize));
    }

    /** Release-store of {@code avail_event} (device). */
    public static void setAvailEvent(MemorySegment used, int queueSize, int value) {
        storeRelease(used, availEventOffset(queueSize), value);
    }

    /**
     * {@code vring_need_event}: whether moving an index from {@code oldIdx} to {@code newIdx}
     * crossed {@code eventIdx}, i.e. the other side asked to be notified when entry
     * {@code eventIdx} is produced. All 16-bit, compared with wrap-around:
     * {@code (u16)(new - event - 1) < (u16)(new - old)}.
     */
    public static boolean needEvent(int eventIdx, int newIdx, int oldIdx) {
        return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    }
}
