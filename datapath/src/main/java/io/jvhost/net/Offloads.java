package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.nativ.Tun;

/**
 * Translates negotiated guest receive offloads into the {@code TUN_F_*} flags of
 * {@code TUNSETOFFLOAD}. The tap's offload flags say what the kernel may hand us on read, i.e. what
 * the guest agreed to receive; what the guest sends (HOST_* bits) needs no tap flag because a
 * {@code IFF_VNET_HDR} tap always accepts partial checksums and GSO on write.
 *
 * <p>Flag values come from {@link Tun} ({@code linux/if_tun.h}). Pure functions, thread-safe.
 */
public final class Offloads {
    private Offloads() {
    }

    public static final int TUN_F_CSUM = Tun.TUN_F_CSUM;
    public static final int TUN_F_TSO4 = Tun.TUN_F_TSO4;
    public static final int TUN_F_TSO6 = Tun.TUN_F_TSO6;
    public static final int TUN_F_TSO_ECN = Tun.TUN_F_TSO_ECN;
    public static final int TUN_F_UFO = Tun.TUN_F_UFO;
    public static final int TUN_F_USO4 = Tun.TUN_F_USO4;
    public static final int TUN_F_USO6 = Tun.TUN_F_USO6;
    /**
     * Both USO flags. The kernel takes them only as a pair (tun's {@code set_offload} maps the two
     * onto one device feature, NETIF_F_GSO_UDP_L4, and refuses either alone with EINVAL; still so
     * on 6.18), and kernels before 6.2 refuse both.
     */
    public static final int TUN_F_USO = TUN_F_USO4 | TUN_F_USO6;

    /**
     * One TUNSETOFFLOAD on every queue of a tap: 0 when the kernel took the flags, EINVAL when it
     * refused them. Other failures are thrown, not returned.
     */
    @FunctionalInterface
    public interface Ioctl {
        int set(int tunFlags);
    }

    /**
     * TUN_F_* flags for the given guest features. Every segmentation offload needs GUEST_CSUM: a
     * segmented frame always carries a partial checksum, and the kernel refuses TSO flags without
     * TUN_F_CSUM (EINVAL), so without GUEST_CSUM we ask for nothing.
     */
    public static int tunFlags(long guestFeatures) {
        if (!VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_CSUM)) {
            return 0;
        }
        int f = TUN_F_CSUM;
        if (VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_TSO4)) {
            f |= TUN_F_TSO4;
        }
        if (VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_TSO6)) {
            f |= TUN_F_TSO6;
        }
        // ECN only qualifies TCP segmentation: meaningless (and refused by some kernels) alone.
        if (VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_ECN) && (f & (TUN_F_TSO4 | TUN_F_TSO6)) != 0) {
            f |= TUN_F_TSO_ECN;
        }
        if (VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_UFO)) {
            f |= TUN_F_UFO;
        }
        if (VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_USO4)) {
            f |= TUN_F_USO4;
        }
        if (VirtioFeatures.has(guestFeatures, VirtioFeatures.NET_F_GUEST_USO6)) {
            f |= TUN_F_USO6;
        }
        return f;
    }

    /**
     * Sets {@code wanted} through {@code ioctl}. Where the kernel refuses it with EINVAL and it
     * holds USO flags (a kernel before 6.2, or a guest that acknowledged only one of GUEST_USO4 and
     * GUEST_USO6), sets it again without them: the guest then gets UDP GSO bursts as the kernel
     * segments them, which every guest can receive.
     *
     * @return the flags in effect ({@code wanted}, or {@code wanted} without {@link #TUN_F_USO})
     * @throws IllegalStateException when the kernel refuses the flags even without USO
     */
    public static int apply(int wanted, Ioctl ioctl) {
        if (ioctl.set(wanted) == 0) {
            return wanted;
        }
        int without = wanted & ~TUN_F_USO;
        if (without != wanted && ioctl.set(without) == 0) {
            return without;
        }
        throw new IllegalStateException("the kernel refuses tap offloads " + describe(without) + " (TUNSETOFFLOAD: EINVAL)");
    }

    /** Human-readable list, e.g. {@code "csum,tso4,tso6"}, for logs and stats. */
    public static String describe(int tunFlags) {
        StringBuilder b = new StringBuilder();
        String[] names = {"csum", "tso4", "tso6", "tso_ecn", "ufo", "uso4", "uso6"};
        for (int i = 0; i < names.length; i++) {
            if ((tunFlags & (1 << i)) != 0) {
                if (!b.isEmpty()) {
                    b.append(',');
                }
                b.append(names[i]);
            }
        }
        return b.isEmpty() ? "none" : b.toString();
    }
}
