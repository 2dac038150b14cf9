package io.jvhost.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Layout of a packed-ring event-suppression area, {@code struct vring_packed_desc_event}
 * (virtio 1.2 §2.8.14), used twice: the driver area (written by the driver: when it wants used
 * notifications) and the device area (written by the device: when it wants available
 * notifications, i.e. kicks):
 * <pre>
 *   le16 off_wrap;  // descriptor ring offset (bits 0-14) and wrap counter (bit 15), for DESC
 *   le16 flags;     // ENABLE (0), DISABLE (1), DESC (2: notify at off_wrap; needs EVENT_IDX)
 * </pre>
 * Both fields are accessed as aligned 16-bit plain loads/stores with explicit fences (see
 * {@link VringAvail}). Values are checked against {@code linux/virtio_ring.h} by the
 * layout-conformance tests.
 */
public final class PackedEvent {
    public static final int SIZE = 4;
    public static final int ALIGN = 4;
    public static final long OFF_WRAP_OFFSET = 0;
    public static final long FLAGS_OFFSET = 2;

    /** VRING_PACKED_EVENT_FLAG_ENABLE: notify on every used / available buffer. */
    public static final int FLAG_ENABLE = 0;
    /** VRING_PACKED_EVENT_FLAG_DISABLE: do not notify. */
    public static final int FLAG_DISABLE = 1;
    /** VRING_PACKED_EVENT_FLAG_DESC: notify when the descriptor at off_wrap is used / made available. */
    public static final int FLAG_DESC = 2;
    /** VRING_PACKED_EVENT_F_WRAP_CTR: bit 15 of off_wrap is the wrap counter. */
    public static final int WRAP_SHIFT = 15;
    /** Offset bits of off_wrap (and of the packed ring base). */
    public static final int OFF_MASK = 0x7fff;

    private static final ValueLayout.OfShort LE_SHORT_ALIGNED = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    private PackedEvent() {
    }

    /** Acquire-load of flags (the other side's area). */
    public static int flagsAcquire(MemorySegment area) {
        int v = Short.toUnsignedInt(area.get(LE_SHORT_ALIGNED, FLAGS_OFFSET));
        VarHandle.acquireFence();
        return v;
    }

    /** Plain load of off_wrap (read after {@link #flagsAcquire}). */
    public static int offWrap(MemorySegment area) {
        return Short.toUnsignedInt(area.get(LE_SHORT_ALIGNED, OFF_WRAP_OFFSET));
    }

    /** Stores off_wrap then release-stores flags (own area). */
    public static void set(MemorySegment area, int offWrap, int flags) {
        area.set(LE_SHORT_ALIGNED, OFF_WRAP_OFFSET, (short) offWrap);
        VarHandle.releaseFence();
        area.set(LE_SHORT_ALIGNED, FLAGS_OFFSET, (short) flags);
    }

    /** off_wrap for ring slot {@code off} and wrap counter {@code wrap}. */
    public static int offWrap(int off, boolean wrap) {
        return (off & OFF_MASK) | (wrap ? 1 << WRAP_SHIFT : 0);
    }
}
