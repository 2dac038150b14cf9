package io.jvhost.virtio;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Every virtio feature bit number jvhost uses, defined once: virtio-net device bits (virtio 1.2
 * §5.1.3), ring and transport bits (§6), vhost's LOG_ALL and the vhost-user PROTOCOL_FEATURES bit.
 * Bits are numbers, not masks: test them with {@link #has(long, int)}, build masks with
 * {@link #bit(int)}. {@link #NAMES} maps each name used on the command line to its bit.
 * The values are checked against the kernel's uapi headers by the layout-conformance tests.
 */
public final class VirtioFeatures {
    private VirtioFeatures() {
    }

    // virtio-net device features
    public static final int NET_F_CSUM = 0;
    public static final int NET_F_GUEST_CSUM = 1;
    public static final int NET_F_CTRL_GUEST_OFFLOADS = 2;
    public static final int NET_F_MTU = 3;
    public static final int NET_F_MAC = 5;
    public static final int NET_F_GUEST_TSO4 = 7;
    public static final int NET_F_GUEST_TSO6 = 8;
    public static final int NET_F_GUEST_ECN = 9;
    public static final int NET_F_GUEST_UFO = 10;
    public static final int NET_F_HOST_TSO4 = 11;
    public static final int NET_F_HOST_TSO6 = 12;
    public static final int NET_F_HOST_ECN = 13;
    public static final int NET_F_HOST_UFO = 14;
    public static final int NET_F_MRG_RXBUF = 15;
    public static final int NET_F_STATUS = 16;
    public static final int NET_F_CTRL_VQ = 17;
    public static final int NET_F_GUEST_ANNOUNCE = 21;
    public static final int NET_F_MQ = 22;
    public static final int NET_F_GUEST_USO4 = 54;
    public static final int NET_F_GUEST_USO6 = 55;
    public static final int NET_F_HOST_USO = 56;

    // transport / ring features
    public static final int F_NOTIFY_ON_EMPTY = 24;
    /** vhost's VHOST_F_LOG_ALL: dirty-page logging (with VHOST_USER_PROTOCOL_F_LOG_SHMFD). */
    public static final int F_LOG_ALL = 26;
    public static final int F_ANY_LAYOUT = 27;
    public static final int RING_F_INDIRECT_DESC = 28;
    public static final int RING_F_EVENT_IDX = 29;
    /** vhost-user: the back-end speaks GET/SET_PROTOCOL_FEATURES (reuses the reserved bit 30). */
    public static final int VHOST_USER_F_PROTOCOL_FEATURES = 30;
    public static final int F_VERSION_1 = 32;
    public static final int F_ACCESS_PLATFORM = 33;
    public static final int F_RING_PACKED = 34;
    public static final int F_IN_ORDER = 35;

    /** Name → bit, in the order --print-capabilities lists them. */
    public static final Map<String, Integer> NAMES;

    static {
        Map<String, Integer> m = new LinkedHashMap<>();
        m.put("csum", NET_F_CSUM);
        m.put("guest-csum", NET_F_GUEST_CSUM);
        m.put("mtu", NET_F_MTU);
        m.put("mac", NET_F_MAC);
        m.put("guest-tso4", NET_F_GUEST_TSO4);
        m.put("guest-tso6", NET_F_GUEST_TSO6);
        m.put("guest-ecn", NET_F_GUEST_ECN);
        m.put("guest-ufo", NET_F_GUEST_UFO);
        m.put("host-tso4", NET_F_HOST_TSO4);
        m.put("host-tso6", NET_F_HOST_TSO6);
        m.put("host-ecn", NET_F_HOST_ECN);
        m.put("host-ufo", NET_F_HOST_UFO);
        m.put("guest-uso4", NET_F_GUEST_USO4);
        m.put("guest-uso6", NET_F_GUEST_USO6);
        m.put("host-uso", NET_F_HOST_USO);
        m.put("mrg-rxbuf", NET_F_MRG_RXBUF);
        m.put("status", NET_F_STATUS);
        m.put("guest-announce", NET_F_GUEST_ANNOUNCE);
        m.put("mq", NET_F_MQ);
        m.put("any-layout", F_ANY_LAYOUT);
        m.put("indirect-desc", RING_F_INDIRECT_DESC);
        m.put("event-idx", RING_F_EVENT_IDX);
        m.put("ring-packed", F_RING_PACKED);
        m.put("in-order", F_IN_ORDER);
        m.put("log-all", F_LOG_ALL);
        m.put("protocol-features", VHOST_USER_F_PROTOCOL_FEATURES);
        m.put("version-1", F_VERSION_1);
        NAMES = java.util.Collections.unmodifiableMap(m);
    }

    /** Every virtio feature jvhost knows how to honour (what a full-featured device offers). */
    public static final long SUPPORTED = NAMES.values().stream().mapToLong(b -> 1L << b).reduce(0L, (a, b) -> a | b);

    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }

    /** The mask of one bit. */
    public static long bit(int bit) {
        return 1L << bit;
    }

    /** True when the guest may send GSO frames of any kind (TX frames up to 64 KiB). */
    public static boolean hostGso(long features) {
        return has(features, NET_F_HOST_TSO4) || has(features, NET_F_HOST_TSO6) || has(features, NET_F_HOST_UFO)
                || has(features, NET_F_HOST_USO);
    }

    /** True when the guest accepts GSO frames (RX frames up to 64 KiB). */
    public static boolean guestGso(long features) {
        return has(features, NET_F_GUEST_TSO4) || has(features, NET_F_GUEST_TSO6) || has(features, NET_F_GUEST_UFO)
                || has(features, NET_F_GUEST_USO4) || has(features, NET_F_GUEST_USO6);
    }

    /** Comma-separated names of the set bits (unknown bits as numbers), for log lines. */
    public static String describe(long features) {
        StringBuilder sb = new StringBuilder();
        long rest = features;
        for (Map.Entry<String, Integer> e : NAMES.entrySet()) {
            if (has(features, e.getValue())) {
                sb.append(sb.isEmpty() ? "" : ",").append(e.getKey());
                rest &= ~(1L << e.getValue());
            }
        }
        while (rest != 0) {
            int bit = Long.numberOfTrailingZeros(rest);
            sb.append(sb.isEmpty() ? "" : ",").append("bit").append(bit);
            rest &= rest - 1;
        }
        return sb.toString();
    }
}
