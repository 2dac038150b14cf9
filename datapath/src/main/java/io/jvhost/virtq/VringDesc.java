package io.jvhost.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Layout of one split-ring descriptor, {@code struct virtq_desc} (virtio 1.x §2.7.5):
 * <pre>
 *   le64 addr;   // guest physical address of the buffer
 *   le32 len;
 *   le16 flags;  // NEXT | WRITE | INDIRECT
 *   le16 next;
 * </pre>
 * All fields little-endian; the table is 16-byte aligned but the accessors use unaligned layouts
 * because an indirect table is only as aligned as the guest made it. Plain (non-atomic) accessors:
 * the descriptor table is ordered by the acquire on {@code avail.idx} (device) or the release on
 * it (driver).
 */
public final class VringDesc {
    /** Bytes per descriptor. */
    public static final int SIZE = 16;
    /** Alignment of the descriptor table required by the spec. */
    public static final int ALIGN = 16;
    public static final long ADDR_OFFSET = 0;
    public static final long LEN_OFFSET = 8;
    public static final long FLAGS_OFFSET = 12;
    public static final long NEXT_OFFSET = 14;

    /** This descriptor continues via the {@code next} field. */
    public static final int F_NEXT = 1;
    /** Device-writable buffer (otherwise device-readable). */
    public static final int F_WRITE = 2;
    /** The buffer is a table of descriptors (VIRTIO_RING_F_INDIRECT_DESC). */
    public static final int F_INDIRECT = 4;

    public static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private VringDesc() {
    }

    /** Bytes of a descriptor table for {@code queueSize} entries. */
    public static long tableSize(int queueSize) {
        return (long) queueSize * SIZE;
    }

    public static long addr(MemorySegment table, long descOffset) {
        return table.get(LE_LONG, descOffset + ADDR_OFFSET);
    }

    /** Length as stored (an unsigned 32-bit value in an int). */
    public static int len(MemorySegment table, long descOffset) {
        return table.get(LE_INT, descOffset + LEN_OFFSET);
    }

    public static int flags(MemorySegment table, long descOffset) {
        return Short.toUnsignedInt(table.get(LE_SHORT, descOffset + FLAGS_OFFSET));
    }

    public static int next(MemorySegment table, long descOffset) {
        return Short.toUnsignedInt(table.get(LE_SHORT, descOffset + NEXT_OFFSET));
    }

    /** Writes a whole descriptor (driver side). */
    public static void put(MemorySegment table, long descOffset, long addr, int len, int flags, int next) {
        table.set(LE_LONG, descOffset + ADDR_OFFSET, addr);
        table.set(LE_INT, descOffset + LEN_OFFSET, len);
        table.set(LE_SHORT, descOffset + FLAGS_OFFSET, (short) flags);
        table.set(LE_SHORT, descOffset + NEXT_OFFSET, (short) next);
    }

    /**
     * Checks a split-ring queue size ({@link RingLayout#SPLIT}: a power of two up to
     * {@link RingLayout#MAX_SIZE}).
     *
     * @throws IllegalArgumentException otherwise
     */
    public static int checkQueueSize(int size) {
        String bad = RingLayout.SPLIT.checkSize(size);
        if (bad != null) {
            throw new IllegalArgumentException("queue " + bad);
        }
        return size;
    }
}
