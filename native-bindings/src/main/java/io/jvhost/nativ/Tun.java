package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.ifreq;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Linux tun/tap: open or attach a tap queue, configure the virtio-net header and offloads, and the
 * two interface settings a demo needs without shelling out (link up, MTU).
 *
 * <p>All calls are control plane: they may allocate and they throw {@link NativeException}s whose
 * messages carry a hint for the usual set-up mistakes. Thread-safe.
 */
public final class Tun {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    public static final int IFF_TUN = Linux.IFF_TUN();
    public static final int IFF_TAP = Linux.IFF_TAP();
    public static final int IFF_NO_PI = Linux.IFF_NO_PI();
    public static final int IFF_VNET_HDR = Linux.IFF_VNET_HDR();
    public static final int IFF_MULTI_QUEUE = Linux.IFF_MULTI_QUEUE();
    public static final int IFF_ATTACH_QUEUE = Linux.IFF_ATTACH_QUEUE();
    public static final int IFF_DETACH_QUEUE = Linux.IFF_DETACH_QUEUE();
    public static final int IFF_PERSIST = Linux.IFF_PERSIST();

    public static final int TUN_F_CSUM = Linux.TUN_F_CSUM();
    public static final int TUN_F_TSO4 = Linux.TUN_F_TSO4();
    public static final int TUN_F_TSO6 = Linux.TUN_F_TSO6();
    public static final int TUN_F_TSO_ECN = Linux.TUN_F_TSO_ECN();
    public static final int TUN_F_UFO = Linux.TUN_F_UFO();
    /** UDP segmentation offload for IPv4 / IPv6; a kernel without USO refuses them (TUNSETOFFLOAD: EINVAL). */
    public static final int TUN_F_USO4 = Linux.TUN_F_USO4();
    public static final int TUN_F_USO6 = Linux.TUN_F_USO6();
    
    /** {@code IFNAMSIZ}: interface names are at most 15 bytes plus NUL. */
    public static final int IFNAMSIZ = Linux.IFNAMSIZ();
    public static final String DEVICE = "/dev/net/tun";

    // ioctl request numbers: jextract evaluated the _IOW/_IOR macros (unsigned long in C).
    static final long TUNSETIFF = Linux.TUNSETIFF();
    static final long TUNSETPERSIST = Linux.TUNSETPERSIST();
    static final long TUNGETFEATURES = Linux.TUNGETFEATURES();
    static final long TUNSETOFFLOAD = Linux.TUNSETOFFLOAD();
    static final long TUNGETIFF = Linux.TUNGETIFF();
    static final long TUNGETVNETHDRSZ = Linux.TUNGETVNETHDRSZ();
    static final long TUNSETVNETHDRSZ = Linux.TUNSETVNETHDRSZ();
    static final long TUNSETQUEUE = Linux.TUNSETQUEUE();
    static final long TUNSETVNETLE = Linux.TUNSETVNETLE();
    static final long TUNSETSNDBUF = Linux.TUNSETSNDBUF();
    static final long TUNGETSNDBUF = Linux.TUNGETSNDBUF();
    static final long SIOCGIFFLAGS = Linux.SIOCGIFFLAGS();
    static final long SIOCSIFFLAGS = Linux.SIOCSIFFLAGS();
    static final long SIOCGIFMTU = Linux.SIOCGIFMTU();
    static final long SIOCSIFMTU = Linux.SIOCSIFMTU();

    /* struct ifreq { union { char ifrn_name[16]; } ifr_ifrn; union { short ifru_flags; int ifru_mtu; ... } ifr_ifru; } */
    static final long IFR_NAME_OFFSET = ifreq.ifr_ifrn$offset() + ifreq.ifr_ifrn.ifrn_name$offset();
    static final long IFR_FLAGS_OFFSET = ifreq.ifr_ifru$offset() + ifreq.ifr_ifru.ifru_flags$offset();
    static final long IFR_MTU_OFFSET = ifreq.ifr_ifru$offset() + ifreq.ifr_ifru.ifru_mtu$offset();
    private static final int NET_IFF_UP = Linux.IFF_UP();

    /*
     * Interface ioctls (SIOC[GS]IF*) work on any socket: the kernel hands them to the device layer
     * when the protocol does not know them. AF_UNIX needs no network protocol in the namespace.
     */
    private static final int AF_UNIX = Linux.AF_UNIX();
    private static final int SOCK_STREAM = Linux.SOCK_STREAM();
    private static final int SOCK_CLOEXEC = Linux.SOCK_CLOEXEC();

    static final String HINT_NO_DEVICE = "modprobe tun / check the container exposes /dev/net/tun";

    private static final MethodHandle OPEN = Native.downcall("open",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), false, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle IOCTL_PTR = Native.downcall("ioctl",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS), false, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle IOCTL_VAL = Native.downcall("ioctl",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG), false, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle SOCKET = Native.downcall("socket",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT), true);

    private Tun() {
    }

    /**
     * Opens {@code /dev/net/tun} (O_RDWR|O_CLOEXEC, blocking: use {@link Fds#setNonBlocking}) and
     * binds it with TUNSETIFF to tap {@code name} using {@code flags} (e.g.
     * {@code IFF_TAP|IFF_NO_PI|IFF_VNET_HDR}). Creates the tap if it does not exist (needs
     * CAP_NET_ADMIN) or attaches to an existing (persistent) one owned by this user; with
     * IFF_MULTI_QUEUE each call adds one queue. {@code name} null or empty lets the kernel pick one
     * (see {@link #ifName}).
     *
     * @return the queue fd
     */
    public static int openTap(String name, int flags) {
        String ifname = name == null ? "" : name;
        checkName(ifname);
        int fd;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = Native.scratch();
            fd = (int) OPEN.invokeExact(s, a.allocateFrom(DEVICE), Fds.O_RDWR | Fds.O_CLOEXEC, 0);
            if (fd < 0) {
                int e = Native.errno(s);
                throw NativeException.of("open", DEVICE, e, openHint(e));
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = ifreq(a, ifname);
            ifr.set(JAVA_SHORT, IFR_FLAGS_OFFSET, (short) flags);
            int e = ioctlPtr(fd, TUNSETIFF, ifr);
            if (e != 0) {
                throw NativeException.of("ioctl TUNSETIFF", ifname.isEmpty() ? "tap%d" : ifname, e,
                        setIffHint(e, ifname, flags));
            }
            return fd;
        } catch (RuntimeException | Error t) {
            Fds.closeQuietly(fd);
            throw t;
        }
    }

    /** The interface name a tap fd is bound to (TUNGETIFF). */
    public static String ifName(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = a.allocate(ifreq.layout());
            check(ioctlPtr(fd, TUNGETIFF, ifr), "ioctl TUNGETIFF", "fd " + fd);
            return ifr.getString(IFR_NAME_OFFSET, StandardCharsets.US_ASCII);
        }
    }

    /** The IFF_* flags the running kernel's tun driver supports (TUNGETFEATURES). */
    public static int features(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check(ioctlPtr(fd, TUNGETFEATURES, v), "ioctl TUNGETFEATURES", "fd " + fd);
            return v.get(JAVA_INT, 0);
        }
    }

    /** Sets the virtio-net header length the tap prepends/expects (10 or 12; TUNSETVNETHDRSZ). */
    public static void setVnetHdrSize(int fd, int size) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            v.set(JAVA_INT, 0, size);
            check(ioctlPtr(fd, TUNSETVNETHDRSZ, v), "ioctl TUNSETVNETHDRSZ", "fd " + fd + ", size " + size);
        }
    }

    /** The virtio-net header length currently set (TUNGETVNETHDRSZ). */
    public static int vnetHdrSize(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check(ioctlPtr(fd, TUNGETVNETHDRSZ, v), "ioctl TUNGETVNETHDRSZ", "fd " + fd);
            return v.get(JAVA_INT, 0);
        }
    }

    /**
     * Declares the virtio-net header little-endian (TUNSETVNETLE), as virtio 1.x requires; a no-op
     * in effect on little-endian hosts.
     */
    public static void setVnetLe(int fd, boolean on) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            v.set(JAVA_INT, 0, on ? 1 : 0);
            check(ioctlPtr(fd, TUNSETVNETLE, v), "ioctl TUNSETVNETLE", "fd " + fd);
        }
    }

    /** Which offloads the kernel may hand us / accept (TUN_F_* bits; TUNSETOFFLOAD). */
    public static void setOffload(int fd, int tunFlags) {
        check(ioctlVal(fd, TUNSETOFFLOAD, tunFlags & 0xffffffffL), "ioctl TUNSETOFFLOAD",
                "fd " + fd + ", flags 0x" + Integer.toHexString(tunFlags));
    }

    /**
     * Caps the bytes of written frames the kernel may still hold for this queue (TUNSETSNDBUF); a
     * write beyond the cap returns EAGAIN until the kernel frees them (EPOLLOUT). The kernel default
     * is INT_MAX, with which a tap write never returns EAGAIN.
     */
    public static void setSndBuf(int fd, int bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            v.set(JAVA_INT, 0, bytes);
            check(ioctlPtr(fd, TUNSETSNDBUF, v), "ioctl TUNSETSNDBUF", "fd " + fd + ", " + bytes + " bytes");
        }
    }

    /** The queue's send-buffer cap (TUNGETSNDBUF). */
    public static int sndBuf(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check(ioctlPtr(fd, TUNGETSNDBUF, v), "ioctl TUNGETSNDBUF", "fd " + fd);
            return v.get(JAVA_INT, 0);
        }
    }

    /** Makes the tap outlive its fds (or not; TUNSETPERSIST). */
    public static void setPersist(int fd, boolean on) {
        check(ioctlVal(fd, TUNSETPERSIST, on ? 1 : 0), "ioctl TUNSETPERSIST", "fd " + fd);
    }

    /** Attaches/detaches this queue of a multi-queue tap (TUNSETQUEUE with IFF_ATTACH/DETACH_QUEUE). */
    public static void setQueueEnabled(int fd, boolean on) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = a.allocate(ifreq.layout());
            ifr.set(JAVA_SHORT, IFR_FLAGS_OFFSET, (short) (on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE));
            check(ioctlPtr(fd, TUNSETQUEUE, ifr), "ioctl TUNSETQUEUE", "fd " + fd + (on ? ", attach" : ", detach"));
        }
    }

    /** Sets interface {@code ifname} (in this network namespace) up or down (SIOCSIFFLAGS). */
    public static void setLinkUp(String ifname, boolean up) {
        checkName(ifname);
        int sock = ifSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = ifreq(a, ifname);
            check(ioctlPtr(sock, SIOCGIFFLAGS, ifr), "ioctl SIOCGIFFLAGS", ifname);
            short fl = ifr.get(JAVA_SHORT, IFR_FLAGS_OFFSET);
            ifr.set(JAVA_SHORT, IFR_FLAGS_OFFSET, (short) (up ? fl | NET_IFF_UP : fl & ~NET_IFF_UP));
            check(ioctlPtr(sock, SIOCSIFFLAGS, ifr), "ioctl SIOCSIFFLAGS", ifname);
        } finally {
            Fds.closeQuietly(sock);
        }
    }

    /** Sets the MTU of interface {@code ifname} (SIOCSIFMTU). */
    public static void setMtu(String ifname, int mtu) {
        checkName(ifname);
        int sock = ifSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = ifreq(a, ifname);
            ifr.set(JAVA_INT, IFR_MTU_OFFSET, mtu);
            check(ioctlPtr(sock, SIOCSIFMTU, ifr), "ioctl SIOCSIFMTU", ifname + ", mtu " + mtu);
        } finally {
            Fds.closeQuietly(sock);
        }
    }

    /** The MTU of interface {@code ifname} (SIOCGIFMTU). */
    public static int mtu(String ifname) {
        checkName(ifname);
        int sock = ifSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = ifreq(a, ifname);
            check(ioctlPtr(sock, SIOCGIFMTU, ifr), "ioctl SIOCGIFMTU", ifname);
            return ifr.get(JAVA_INT, IFR_MTU_OFFSET);
        } finally {
            Fds.closeQuietly(sock);
        }
    }

    // ---- hints (package-visible for tests) ----

    static String openHint(int errno) {
        return switch (errno) {
            case Errno.ENOENT, Errno.ENODEV, Errno.ENXIO -> HINT_NO_DEVICE;
            case Errno.EACCES, Errno.EPERM -> DEVICE + " is not accessible to this user: check its permissions"
                    + " (crw-rw-rw- is usual) and the container's device cgroup";
            default -> null;
        };
    }

    static String setIffHint(int errno, String ifname, int flags) {
        boolean exists = !ifname.isEmpty() && Files.exists(Path.of("/sys/class/net", ifname));
        return setIffHint(errno, ifname, flags, exists, System.getProperty("user.name", "USER"));
    }

    static String setIffHint(int errno, String ifname, int flags, boolean exists, String user) {
        String name = ifname.isEmpty() ? "NAME" : ifname;
        return switch (errno) {
            case Errno.EPERM -> exists ? inUseHint(name)
                    : "run as root or give CAP_NET_ADMIN, or pre-create a persistent tap owned by your user: "
                            + "ip tuntap add dev " + name + " mode tap user " + user + " vnet_hdr"
                            + ((flags & IFF_MULTI_QUEUE) != 0 ? " multi_queue" : "");
            case Errno.EBUSY -> inUseHint(name);
            case Errno.EINVAL -> exists
                    ? "interface " + name + " exists but is not a tap with matching flags (tun/tap, multi_queue, "
                            + "vnet_hdr must match how it was created): choose another --tap name or recreate it"
                    : "invalid tap flags 0x" + Integer.toHexString(flags);
            default -> null;
        };
    }

    private static String inUseHint(String name) {
        return "tap " + name + " exists and belongs to another user or is in use: choose another --tap name "
                + "or fix its owner with `ip tuntap`";
    }

    // ---- helpers ----

    private static void checkName(String ifname) {
        if (ifname == null || ifname.getBytes(StandardCharsets.US_ASCII).length >= IFNAMSIZ
                || ifname.indexOf('/') >= 0 || ifname.indexOf(0) >= 0) {
            throw new IllegalArgumentException("bad interface name '" + ifname + "' (at most "
                    + (IFNAMSIZ - 1) + " characters, no '/')");
        }
    }

    private static MemorySegment ifreq(Arena a, String ifname) {
        MemorySegment ifr = a.allocate(ifreq.layout());
        byte[] b = ifname.getBytes(StandardCharsets.US_ASCII);
        MemorySegment.copy(b, 0, ifr, JAVA_BYTE, IFR_NAME_OFFSET, b.length);
        return ifr;
    }

    private static int ifSocket() {
        MemorySegment s = Native.scratch();
        int fd;
        try {
            fd = (int) SOCKET.invokeExact(s, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (fd < 0) {
            throw NativeException.of("socket", "AF_UNIX", Native.errno(s));
        }
        return fd;
    }

    /** ioctl with a pointer argument: 0 or the errno. */
    private static int ioctlPtr(int fd, long req, MemorySegment arg) {
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) IOCTL_PTR.invokeExact(s, fd, req, arg);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        return r < 0 ? Native.errno(s) : 0;
    }

    /** ioctl with a by-value (unsigned long) argument: 0 or the errno. */
    private static int ioctlVal(int fd, long req, long arg) {
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) IOCTL_VAL.invokeExact(s, fd, req, arg);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        return r < 0 ? Native.errno(s) : 0;
    }

    private static void check(int errno, String call, String context) {
        if (errno != 0) {
            throw NativeException.of(call, context, errno);
        }
    }
}
