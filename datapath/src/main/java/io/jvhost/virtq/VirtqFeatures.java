package io.jvhost.virtq;

/** Virtio feature bits the ring layer cares about (virtio 1.x §6). */
public final class VirtqFeatures {
    /** VIRTIO_RING_F_INDIRECT_DESC: descriptors may point to indirect tables. */
    public static final int RING_F_INDIRECT_DESC = 28;
    /** VIRTIO_RING_F_EVENT_IDX: used_event / avail_event notification suppression. */
    public static final int RING_F_EVENT_IDX = 29;
    /** VIRTIO_F_VERSION_1. */
    public static final int F_VERSION_1 = 32;

    private VirtqFeatures() {
    }

    /** Whether bit {@code bit} is set in {@code features}. */
    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }
}
