package io.jvhost.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Layout of one packed-ring descriptor, {@code struct vring_packed_desc} (virtio 1.2 §2.8.13):
 * <pre>
 *   le64 addr;   // buffer guest-physical address
 *   le32 len;    // buffer length (used descriptor: bytes written)
 *   le16 id;     // buffer id (in the last descriptor of a chain; echoed in the used descriptor)
 *   le16 flags;  // NEXT, WRITE, INDIRECT, AVAIL (bit 7), USED (bit 15)
 * </pre>
 * A descriptor is available when its AVAIL bit equals the driver's wrap counter and its USED bit
 * does not; used when both equal the device's wrap counter. The driver writes addr, len and id,
 * then release-stores flags; the device acquire-loads flags ({@link #flagsAcquire}) and only then
 * reads the rest. The device writes a used descriptor's id and len, then release-stores its flags
 * ({@link #flagsRelease}). Offsets and flag values are checked against {@code linux/virtio_ring.h}
 * by the layout-conformance tests.
 */
public final class PackedDesc {
    public static final int SIZE = 16;
    public static final int ALIGN = 16;
    public static final long ADDR_OFFSET = 0;
    public static final long LEN_OFFSET = 8;
    public static final long ID_OFFSET = 12;
    public static final long FLAGS_OFFSET = 14;

    /** Chain continues in the next ring slot (or the next entry of an indirect table). */
    public static final int F_NEXT = 1;
    /** Buffer is device-writable. */
    public static final int F_WRITE = 2;
    /** Buffer holds an indirect table of packed descriptors. */
    public static final int F_INDIRECT = 4;
    /** VRING_PACKED_DESC_F_AVAIL: the driver's wrap counter when it made the descriptor available. */
    public static final int F_AVAIL = 1 << 7;
    /** VRING_PACKED_DESC_F_USED: the device's wrap counter when it used the descriptor. */
    public static final int F_USED = 1 << 15;

    private static final ValueLayout.OfLong LE_LONG = VringDesc.LE_LONG;
    private static final ValueLayout.OfInt LE_INT = VringDesc.LE_INT;
    /** Aligned (ring slots are 16-aligned): single-copy atomic, see {@link VringAvail}'s note on plain + fences. */
    private static final ValueLayout.OfShort LE_SHORT_ALIGNED = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    private PackedDesc() {
    }

    /** Byte offset of ring slot {@code slot}. */
    public static long offset(int slot) {
        return (long) slot * SIZE;
    }

    /**
     * Acquire-load of a descriptor's flags (device, and driver for used descriptors): the rest of
     * the descriptor is read after. Plain load + fence, never a VarHandle atomic mode on guest
     * memory (see {@link VringAvail}).
     */
    public static int flagsAcquire(MemorySegment ring, long descOffset) {
        int v = Short.toUnsignedInt(ring.get(LE_SHORT_ALIGNED, descOffset + FLAGS_OFFSET));
        VarHandle.acquireFence();
        return v;
    }

    /** Release-store of a descriptor's flags: addr/len/id written before are visible first. */
    public static void flagsRelease(MemorySegment ring, long descOffset, int flags) {
        VarHandle.releaseFence();
        ring.set(LE_SHORT_ALIGNED, descOffset + FLAGS_OFFSET, (short) flags);
    }

    /** Plain flags read, for descriptors already known available (indirect tables, chain members). */
    public static int flags(MemorySegment table, long descOffset) {
        return Short.toUnsignedInt(table.get(VringDesc.LE_SHORT, descOffset + FLAGS_OFFSET));
    }

    public static long addr(MemorySegment table, long descOffset) {
        return table.get(LE_LONG, descOffset + ADDR_OFFSET);
    }

    public static int len(MemorySegment table, long descOffset) {
        return table.get(LE_INT, descOffset + LEN_OFFSET);
    }

    public static int id(MemorySegment table, long descOffset) {
        return Short.toUnsignedInt(table.get(VringDesc.LE_SHORT, descOffset + ID_OFFSET));
    }

    /** Plain write of a used descriptor's id and length (device); published by {@link #flagsRelease}. */
    public static void putUsed(MemorySegment ring, long descOffset, int id, int len) {
        ring.set(LE_INT, descOffset + LEN_OFFSET, len);
        ring.set(VringDesc.LE_SHORT, descOffset + ID_OFFSET, (short) id);
    }

    /**
     * Plain store of a used descriptor's flags, for a descriptor a later {@link #flagsRelease} of
     * an earlier slot publishes (the driver reads used descriptors in ring order).
     */
    public static void putFlags(MemorySegment ring, long descOffset, int flags) {
        ring.set(LE_SHORT_ALIGNED, descOffset + FLAGS_OFFSET, (short) flags);
    }

    /** Plain write of addr, len and id (driver); the flags follow with {@link #flagsRelease}. */
    public static void put(MemorySegment ring, long descOffset, long addr, int len, int id) {
        ring.set(LE_LONG, descOffset + ADDR_OFFSET, addr);
        ring.set(LE_INT, descOffset + LEN_OFFSET, len);
        ring.set(VringDesc.LE_SHORT, descOffset + ID_OFFSET, (short) id);
    }

    /** Plain write of a whole descriptor (indirect tables, which the device reads after the ring flags). */
    public static void putPlain(MemorySegment table, long descOffset, long addr, int len, int id, int flags) {
        put(table, descOffset, addr, len, id);
        table.set(VringDesc.LE_SHORT, descOffset + FLAGS_OFFSET, (short) flags);
    }

    /** The AVAIL/USED flag pair that marks a descriptor available for a driver wrap counter. */
    public static int availFlags(boolean wrap) {
        return wrap ? F_AVAIL : F_USED;
    }

    /** The AVAIL/USED flag pair that marks a descriptor used for a device wrap counter. */
    public static int usedFlags(boolean wrap) {
        return wrap ? F_AVAIL | F_USED : 0;
    }

    /** Whether {@code flags} mark a descriptor available for the driver wrap counter {@code wrap}. */
    public static boolean isAvail(int flags, boolean wrap) {
        return ((flags & F_AVAIL) != 0) == wrap && ((flags & F_USED) != 0) != wrap;
    }

    /** Whether {@code flags} mark a descriptor used for the wrap counter {@code wrap}. */
    public static boolean isUsed(int flags, boolean wrap) {
        return ((flags & F_AVAIL) != 0) == wrap && ((flags & F_USED) != 0) == wrap;
    }
}
