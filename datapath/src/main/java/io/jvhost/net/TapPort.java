package io.jvhost.net;

import io.jvhost.nativ.Errno;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Tun;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The Linux tap behind a device: one non-blocking fd per queue pair, opened with
 * {@code IFF_TAP|IFF_NO_PI|IFF_VNET_HDR} (and {@code IFF_MULTI_QUEUE} when there is more than one
 * queue pair, or when the existing tap was created multi-queue).
 *
 * <p>The tap is created when it does not exist (needs CAP_NET_ADMIN; it then disappears with our
 * fds) or attached to when it does — typically a persistent tap pre-created for an unprivileged
 * user ({@code ip tuntap add dev NAME mode tap user USER vnet_hdr [multi_queue]}). An attached tap
 * is left as found on {@link #close()}: its vnet header size is restored, offloads are switched off
 * again, and its persistence and ownership are never touched.
 *
 * <p>The vnet header size follows the negotiated features (12 bytes with VERSION_1 or MRG_RXBUF,
 * else 10) so headers pass between guest and tap unchanged; offloads follow the guest's receive
 * features ({@link Offloads}). Both are re-applied by {@link #applyFeatures} whenever the front-end
 * sets features. Whether the kernel takes UDP segmentation offload on a tap (Linux 6.2+) is probed
 * once at open ({@link #usoSupported}); where it refuses USO flags later, the tap runs without them
 * (one log line). Threading: control thread only; the fds themselves are used by the workers.
 */
public final class TapPort implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(TapPort.class.getName());
    /** Base flags of every queue fd. */
    public static final int BASE_FLAGS = Tun.IFF_TAP | Tun.IFF_NO_PI | Tun.IFF_VNET_HDR;

    /**
     * TUNSETOFFLOAD on one queue fd: 0, or EINVAL when the kernel refuses the flags (other errors
     * are thrown). A seam for tests that play an older kernel.
     */
    @FunctionalInterface
    interface OffloadIoctl {
        int set(int fd, int tunFlags);
    }

    static final OffloadIoctl KERNEL = (fd, flags) -> {
        try {
            Tun.setOffload(fd, flags);
            return 0;
        } catch (NativeException e) {
            if (e.errno() == Errno.EINVAL) {
                return Errno.EINVAL;
            }
            throw e;
        }
    };

    private final String ifName;
    private final int[] fds;
    private final OffloadIoctl ioctl;
    private final boolean uso;
    /** The offloads last refused in part (logged once per distinct set), or -1. */
    private int refusedLogged = -1;
    private final boolean preExisting;
    private final boolean multiQueue;
    private final int originalHdrSize;
    /** Every queue starts attached (TUNSETIFF attaches it). */
    private final boolean[] queueAttached;
    private int hdrSize;
    private int offloads;
    private boolean offloadsChanged;

    private TapPort(String ifName, int[] fds, boolean preExisting, boolean multiQueue, int originalHdrSize,
                    OffloadIoctl ioctl) {
        this.ifName = ifName;
        this.fds = fds;
        this.ioctl = ioctl;
        this.preExisting = preExisting;
        this.multiQueue = multiQueue;
        this.originalHdrSize = originalHdrSize;
        this.hdrSize = originalHdrSize;
        this.queueAttached = new boolean[fds.length];
        java.util.Arrays.fill(queueAttached, true);
        this.uso = probeUso();
    }

    /**
     * Whether this kernel takes USO on the tap: TUNSETOFFLOAD(CSUM|USO4|USO6) is accepted from
     * Linux 6.2, the same release that accepts VIRTIO_NET_HDR_GSO_UDP_L4 frames written to a tap.
     * Leaves the offloads off, as a fresh tap has them until features are negotiated.
     */
    private boolean probeUso() {
        int probe = Offloads.TUN_F_CSUM | Offloads.TUN_F_USO;
        boolean ok = Offloads.apply(probe, this::setOffloads) == probe;
        Offloads.apply(0, this::setOffloads);
        offloadsChanged = true;
        if (!ok) {
            LOG.log(System.Logger.Level.INFO, "tap {0}: the kernel refuses UDP segmentation offload (TUN_F_USO4/6: "
                    + "EINVAL, Linux before 6.2): host-uso, guest-uso4 and guest-uso6 are not offered", ifName);
        }
        return ok;
    }

    private int setOffloads(int flags) {
        for (int fd : fds) {
            int r = ioctl.set(fd, flags);
            if (r != 0) {
                return r;
            }
        }
        return 0;
    }

    /**
     * Opens or attaches to tap {@code name} with {@code queuePairs} queues.
     *
     * @param name       interface name; null or empty lets the kernel choose (tapN), always created
     * @param queuePairs number of queue fds (≥ 1)
     * @throws NativeException with a hint (missing /dev/net/tun, EPERM, busy, wrong flags)
     */
    public static TapPort open(String name, int queuePairs) {
        return open(name, queuePairs, KERNEL);
    }

    /** {@link #open(String, int)} with TUNSETOFFLOAD going through {@code ioctl} (tests). */
    static TapPort open(String name, int queuePairs, OffloadIoctl ioctl) {
        if (queuePairs < 1) {
            throw new IllegalArgumentException("queuePairs " + queuePairs);
        }
        boolean exists = name != null && !name.isEmpty() && Files.exists(Path.of("/sys/class/net", name));
        int existingFlags = exists ? readTunFlags(name) : -1;
        if (exists && existingFlags < 0) {
            throw new IllegalArgumentException("interface " + name + " exists and is not a tun/tap device");
        }
        // An existing tap must be attached with the multi-queue flag it was created with (else EINVAL).
        boolean mq = queuePairs > 1 || (existingFlags >= 0 && (existingFlags & Tun.IFF_MULTI_QUEUE) != 0);
        if (exists && queuePairs > 1 && (existingFlags & Tun.IFF_MULTI_QUEUE) == 0) {
            throw new IllegalArgumentException("tap " + name + " was created without multi_queue; " + queuePairs
                    + " queue pairs need it (ip tuntap add dev " + name + " mode tap multi_queue vnet_hdr ...)");
        }
        int flags = BASE_FLAGS | (mq ? Tun.IFF_MULTI_QUEUE : 0);
        int[] fds = new int[queuePairs];
        java.util.Arrays.fill(fds, -1);
        try {
            String actual = name;
            for (int i = 0; i < queuePairs; i++) {
                fds[i] = Tun.openTap(actual, flags);
                if (i == 0) {
                    actual = Tun.ifName(fds[0]);
                }
                Fds.setNonBlocking(fds[i], true);
            }
            int original = Tun.vnetHdrSize(fds[0]);
            TapPort p = new TapPort(actual, fds, exists, mq, original, ioctl);
            LOG.log(System.Logger.Level.INFO, "tap {0}: {1} ({2} queue(s){3})", actual,
                    exists ? "attached" : "created", queuePairs, mq ? ", multi-queue" : "");
            return p;
        } catch (RuntimeException e) {
            for (int fd : fds) {
                Fds.closeQuietly(fd);
            }
            throw e;
        }
    }

    /** Reads /sys/class/net/NAME/tun_flags (hex), or -1 when NAME is not a tun/tap. */
    static int readTunFlags(String name) {
        try {
            String s = Files.readString(Path.of("/sys/class/net", name, "tun_flags")).trim();
            return Integer.decode(s);
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }

    /**
     * Sets vnet header size and offloads from the negotiated virtio features on every queue fd.
     * Safe while workers run: the header size only changes between feature negotiations, before the
     * rings using it start (the session orders SET_FEATURES before ring start).
     */
    public void applyFeatures(long features) {
        int size = VirtioNetHdr.size(features);
        int wanted = Offloads.tunFlags(features);
        for (int fd : fds) {
            Tun.setVnetHdrSize(fd, size);
        }
        int off = Offloads.apply(wanted, this::setOffloads);
        if (off != wanted && refusedLogged != wanted) {
            refusedLogged = wanted;
            LOG.log(System.Logger.Level.INFO, "tap {0}: the kernel refuses offloads {1} (EINVAL; it takes uso4 and "
                    + "uso6 only together, from Linux 6.2): running with {2}, UDP GSO bursts reach the guest segmented",
                    ifName, Offloads.describe(wanted), Offloads.describe(off));
        }
        if (size != hdrSize || off != offloads) {
            LOG.log(System.Logger.Level.DEBUG, "tap {0}: vnet header {1} bytes, offloads {2}", ifName, size,
                    Offloads.describe(off));
        }
        hdrSize = size;
        offloads = off;
        offloadsChanged = true;
    }

    /**
     * Caps, per queue, the bytes of guest frames the kernel may hold before a write returns EAGAIN
     * (TUNSETSNDBUF; QEMU's {@code sndbuf}). With the kernel default (INT_MAX) tap writes never block:
     * a slow egress (qdisc, bridge port) then drops instead of pushing back on the guest. With a cap,
     * the TX engine sees EAGAIN, holds the chain and resumes on EPOLLOUT (docs/DATAPATH.md).
     */
    public void setSndBuf(int bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("sndbuf " + bytes);
        }
        for (int fd : fds) {
            Tun.setSndBuf(fd, bytes);
        }
    }

    /** Attaches or detaches one queue of a multi-queue tap (a detached queue gets no frames). No-op otherwise. */
    public synchronized void setQueueEnabled(int queuePair, boolean on) {
        // The kernel refuses (EINVAL) to attach an attached queue or detach a detached one.
        if (multiQueue && queueAttached[queuePair] != on) {
            Tun.setQueueEnabled(fds[queuePair], on);
            queueAttached[queuePair] = on;
        }
    }

    public String ifName() {
        return ifName;
    }

    public int fd(int queuePair) {
        return fds[queuePair];
    }

    public int queues() {
        return fds.length;
    }

    public boolean multiQueue() {
        return multiQueue;
    }

    public boolean preExisting() {
        return preExisting;
    }

    public int hdrSize() {
        return hdrSize;
    }

    /** The TUN_F_* offloads in effect (what the kernel took of what the negotiated features asked for). */
    public int offloads() {
        return offloads;
    }

    /** Whether the kernel takes UDP segmentation offload on this tap (probed at open). */
    public boolean usoSupported() {
        return uso;
    }

    /** Current MTU of the tap interface. */
    public int mtu() {
        return Tun.mtu(ifName);
    }

    @Override
    public void close() {
        if (preExisting) {
            try {
                if (hdrSize != originalHdrSize) {
                    Tun.setVnetHdrSize(fds[0], originalHdrSize);
                }
                if (offloadsChanged) {
                    Offloads.apply(0, this::setOffloads);
                }
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "tap {0}: could not restore settings: {1}; check it with"
                        + " ip -d link show and reset its MTU/offloads by hand if another program uses it", ifName,
                        e.getMessage());
            }
        }
        for (int i = 0; i < fds.length; i++) {
            Fds.closeQuietly(fds[i]);
            fds[i] = -1;
        }
    }
}
