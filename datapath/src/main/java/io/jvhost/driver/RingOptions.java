package io.jvhost.driver;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.RingLayout;

import java.util.ArrayList;
import java.util.List;

/**
 * The ring format and ordering a Java driver asks for: {@code split}, {@code packed},
 * {@code split-inorder} or {@code packed-inorder} — the names the demo, the bench and the tests use.
 * A driver that asks for packed rings or IN_ORDER needs the device to offer them: it does not fall
 * back ({@link #unsupportedBy}).
 *
 * @param layout  split or packed virtqueues ({@code VIRTIO_F_RING_PACKED})
 * @param inOrder {@code VIRTIO_F_IN_ORDER}
 */
public record RingOptions(RingLayout layout, boolean inOrder) {
    public static final RingOptions SPLIT = new RingOptions(RingLayout.SPLIT, false);

    /** The feature bits these options set: VIRTIO_F_RING_PACKED and VIRTIO_F_IN_ORDER. */
    public static final long RING_BITS = VirtioFeatures.bit(VirtioFeatures.F_RING_PACKED) | VirtioFeatures.bit(VirtioFeatures.F_IN_ORDER);

    /** Every combination, in the order tests and the bench run them. */
    public static final List<RingOptions> ALL = List.of(SPLIT, new RingOptions(RingLayout.PACKED, false),
            new RingOptions(RingLayout.SPLIT, true), new RingOptions(RingLayout.PACKED, true));

    /** The ring options the negotiated features select. */
    public static RingOptions of(long features) {
        return new RingOptions(RingLayout.of(features), VirtioFeatures.has(features, VirtioFeatures.F_IN_ORDER));
    }

    /** {@code split}, {@code packed}, {@code split-inorder} or {@code packed-inorder}. */
    public static RingOptions parse(String name) {
        for (RingOptions r : ALL) {
            if (r.id().equals(name.strip())) {
                return r;
            }
        }
        throw new IllegalArgumentException("unknown ring option " + name + " (split, packed, split-inorder, packed-inorder)");
    }

    /** A comma-separated list of {@link #parse} names. */
    public static List<RingOptions> parseList(String names) {
        List<RingOptions> out = new ArrayList<>();
        for (String n : names.split(",")) {
            if (!n.isBlank()) {
                out.add(parse(n));
            }
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException("no ring option in \"" + names + "\"");
        }
        return out;
    }

    public String id() {
        return (layout == RingLayout.PACKED ? "packed" : "split") + (inOrder ? "-inorder" : "");
    }

    /** The feature bits to acknowledge for these rings (added to the driver's other features). */
    public long features() {
        return (layout == RingLayout.PACKED ? VirtioFeatures.bit(VirtioFeatures.F_RING_PACKED) : 0)
                | (inOrder ? VirtioFeatures.bit(VirtioFeatures.F_IN_ORDER) : 0);
    }

    /** {@code features} with the ring bits replaced by these. */
    public long applyTo(long features) {
        return (features & ~RING_BITS) | features();
    }

    /**
     * Null when a device offering {@code offered} can run these rings, else the message a driver
     * fails with (it asked for packed rings or IN_ORDER and does not fall back).
     */
    public String unsupportedBy(long offered) {
        return missing(features(), offered);
    }

    /** The message for ring bits in {@code wanted} that {@code offered} lacks, or null. */
    public static String missing(long wanted, long offered) {
        String m = missingBits(wanted, offered);
        if (m == null) {
            return null;
        }
        return "the device does not offer " + m + " (offered 0x" + Long.toHexString(offered)
                + "); the driver asked for " + of(wanted).id() + " rings and does not fall back to others";
    }

    /** The names of the ring bits in {@code wanted} that {@code offered} lacks ("A or B"), or null. */
    public static String missingBits(long wanted, long offered) {
        List<String> m = new ArrayList<>();
        if (VirtioFeatures.has(wanted, VirtioFeatures.F_RING_PACKED) && !VirtioFeatures.has(offered, VirtioFeatures.F_RING_PACKED)) {
            m.add("VIRTIO_F_RING_PACKED (packed virtqueues)");
        }
        if (VirtioFeatures.has(wanted, VirtioFeatures.F_IN_ORDER) && !VirtioFeatures.has(offered, VirtioFeatures.F_IN_ORDER)) {
            m.add("VIRTIO_F_IN_ORDER");
        }
        return m.isEmpty() ? null : String.join(" or ", m);
    }

    @Override
    public String toString() {
        return id();
    }
}
