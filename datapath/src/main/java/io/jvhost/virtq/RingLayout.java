package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;

/**
 * The shape of a virtqueue in guest memory for one ring format: which sizes are valid, how large
 * and how aligned its three areas are, and how the vhost-user ring base ({@code SET_VRING_BASE} /
 * {@code GET_VRING_BASE} {@code num}) is encoded. The vhost-user session validates what the
 * front-end sends with it, the queue implementation lays itself out with it: one definition for
 * both.
 *
 * <p>The three areas are named as in virtio 1.2 §2.6: the descriptor area, the driver area and the
 * device area. {@code SET_VRING_ADDR} carries them as {@code desc_user_addr},
 * {@code avail_user_addr} (driver area) and {@code used_user_addr} (device area) for both formats.
 */
public enum RingLayout {
    /** Split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring. */
    SPLIT {
        @Override
        public String checkSize(int size) {
            return size >= 1 && size <= MAX_SIZE && Integer.bitCount(size) == 1 ? null
                    : "size " + Integer.toUnsignedString(size) + " is not a power of two in [1, " + MAX_SIZE + "]";
        }

        @Override
        public long descBytes(int size) {
            return VringDesc.tableSize(size);
        }

        @Override
        public long driverBytes(int size) {
            return VringAvail.sizeOf(size);
        }

        @Override
        public long deviceBytes(int size) {
            return VringUsed.sizeOf(size);
        }

        @Override
        public int descAlign() {
            return VringDesc.ALIGN;
        }

        @Override
        public int driverAlign() {
            return VringAvail.ALIGN;
        }

        @Override
        public int deviceAlign() {
            return VringUsed.ALIGN;
        }

        @Override
        public String checkBase(int num, int size) {
            return (num & ~0xffff) == 0 ? null
                    : "base " + Integer.toUnsignedString(num) + " exceeds 16 bits (split ring: the next avail index)";
        }
    },

    /**
     * Packed virtqueue (virtio 1.2 §2.8): one descriptor ring and two 4-byte event-suppression
     * areas. The ring base packs the next avail index (bits 0-14) with the driver's wrap counter
     * (bit 15); bits 16-30 and 31 carry the used index and used wrap counter where the front-end
     * keeps them (QEMU's {@code virtio_queue_packed_get/set_last_avail_idx} use all 32 bits; DPDK
     * 22.11's back-end reads and answers only the low 16).
     */
    PACKED {
        @Override
        public String checkSize(int size) {
            return size >= 1 && size <= MAX_SIZE ? null
                    : "size " + Integer.toUnsignedString(size) + " outside [1, " + MAX_SIZE + "]";
        }

        @Override
        public long descBytes(int size) {
            return (long) size * PackedDesc.SIZE;
        }

        @Override
        public long driverBytes(int size) {
            return PackedEvent.SIZE;
        }

        @Override
        public long deviceBytes(int size) {
            return PackedEvent.SIZE;
        }

        @Override
        public int descAlign() {
            return PackedDesc.ALIGN;
        }

        @Override
        public int driverAlign() {
            return PackedEvent.ALIGN;
        }

        @Override
        public int deviceAlign() {
            return PackedEvent.ALIGN;
        }

        @Override
        public String checkBase(int num, int size) {
            int avail = num & PackedEvent.OFF_MASK;
            int used = (num >>> 16) & PackedEvent.OFF_MASK;
            if (avail >= size || used >= size) {
                return "base 0x" + Integer.toHexString(num) + ": avail index " + avail + " or used index " + used
                        + " not below the ring size " + size;
            }
            return null;
        }
    };

    /** Largest ring of either format (virtio 1.2: Queue Size ≤ 32768). */
    public static final int MAX_SIZE = 32768;

    /** The format the negotiated features select ({@code VIRTIO_F_RING_PACKED}). */
    public static RingLayout of(long features) {
        return VirtioFeatures.has(features, VirtioFeatures.F_RING_PACKED) ? PACKED : SPLIT;
    }

    /** Null when {@code size} is a valid ring size of this format, else why not. */
    public abstract String checkSize(int size);

    /**
     * Null when {@code num} is a ring base this format can resume from on a ring of {@code size}
     * descriptors ({@code size} already valid), else why not.
     */
    public abstract String checkBase(int num, int size);

    /** Bytes of the descriptor area of a ring of {@code size}. */
    public abstract long descBytes(int size);

    /** Bytes of the driver area (split: available ring with used_event; packed: driver event suppression). */
    public abstract long driverBytes(int size);

    /** Bytes of the device area (split: used ring with avail_event; packed: device event suppression). */
    public abstract long deviceBytes(int size);

    public abstract int descAlign();

    public abstract int driverAlign();

    public abstract int deviceAlign();

    /** Null when the three front-end addresses meet this format's alignment, else which one does not. */
    public String checkAlignment(long desc, long driver, long device) {
        if ((desc & (descAlign() - 1)) != 0) {
            return "descriptor area 0x" + Long.toHexString(desc) + " not aligned to " + descAlign();
        }
        if ((driver & (driverAlign() - 1)) != 0) {
            return "driver area 0x" + Long.toHexString(driver) + " not aligned to " + driverAlign();
        }
        if ((device & (deviceAlign() - 1)) != 0) {
            return "device area 0x" + Long.toHexString(device) + " not aligned to " + deviceAlign();
        }
        return null;
    }
}
