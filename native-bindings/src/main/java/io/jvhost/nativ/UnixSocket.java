package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.cmsghdr;
import io.jvhost.nativ.gen.msghdr;
import io.jvhost.nativ.gen.sockaddr_un;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Arrays;
import java.util.Objects;

/**
 * AF_UNIX stream sockets with SCM_RIGHTS fd passing: the vhost-user transport. Also datagram
 * sockets for systemd's {@code NOTIFY_SOCKET} ({@link #connectDatagram}, {@link #bindDatagram}).
 *
 * <p>All sockets are created close-on-exec; received fds are close-on-exec (MSG_CMSG_CLOEXEC). A
 * message carries at most {@link #MAX_FDS} fds (the vhost-user limit). {@link #send} and
 * {@link #recv} return {@link Fds#WOULD_BLOCK} on a non-blocking socket with no progress and retry
 * EINTR. These are control-plane calls: they allocate a little per call. Thread-safe.
 */
public final class UnixSocket {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    /** Most fds accepted in one message (vhost-user's VHOST_MEMORY_BASELINE_NREGIONS). */
    public static final int MAX_FDS = Linux.JVHOST_CMSG_MAX_FDS();

    private static final int AF_UNIX = Linux.AF_UNIX();
    private static final int SOCK_STREAM = Linux.SOCK_STREAM();
    /**
     * SOCK_DGRAM is not in the committed generated constant set (adding it to symbols.txt needs a
     * jextract run, tools/regen-bindings.sh); 2 is its value in Linux's ABI on every architecture
     * jvhost runs on (only MIPS differs), and {@code UnixSocketTest} checks a datagram round trip.
     */
    private static final int SOCK_DGRAM = 2;
    private static final int SOCK_NONBLOCK = Linux.SOCK_NONBLOCK();
    private static final int SOCK_CLOEXEC = Linux.SOCK_CLOEXEC();
    private static final int SOL_SOCKET = Linux.SOL_SOCKET();
    private static final int SCM_RIGHTS = Linux.SCM_RIGHTS();
    private static final int MSG_CTRUNC = Linux.MSG_CTRUNC();
    private static final int MSG_NOSIGNAL = Linux.MSG_NOSIGNAL();
    private static final int MSG_CMSG_CLOEXEC = Linux.MSG_CMSG_CLOEXEC();

    private static final long SUN_FAMILY = sockaddr_un.sun_family$offset();
    private static final long SUN_PATH_OFFSET = sockaddr_un.sun_path$offset();
    private static final long SOCKADDR_UN_SIZE = sockaddr_un.sizeof();
    private static final long SUN_PATH_MAX = SOCKADDR_UN_SIZE - SUN_PATH_OFFSET;

    private static final long MSG_IOV = msghdr.msg_iov$offset();
    private static final long MSG_IOVLEN = msghdr.msg_iovlen$offset();
    private static final long MSG_CONTROL = msghdr.msg_control$offset();
    private static final long MSG_CONTROLLEN = msghdr.msg_controllen$offset();
    private static final long MSG_FLAGS = msghdr.msg_flags$offset();

    /* CMSG_* are function-like macros: their values come from jvhost.h via the generated constants. */
    private static final long CMSG_ALIGN = Linux.JVHOST_CMSG_ALIGN();
    private static final long CMSG_HDR = Linux.JVHOST_CMSG_HDR_LEN();
    private static final long CMSG_LEN_FIELD = cmsghdr.cmsg_len$offset();
    private static final long CMSG_LEVEL = cmsghdr.cmsg_level$offset();
    private static final long CMSG_TYPE = cmsghdr.cmsg_type$offset();
    private static final long CMSG_SPACE_MAX_FDS = Linux.JVHOST_CMSG_SPACE_MAX_FDS();

    private static final MethodHandle SOCKET = Native.downcall("socket",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT), true);
    private static final MethodHandle SOCKETPAIR = Native.downcall("socketpair",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS), true);
    private static final MethodHandle BIND = Native.downcall("bind",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT), false);
    private static final MethodHandle LISTEN = Native.downcall("listen",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT), false);
    private static final MethodHandle ACCEPT4 = Native.downcall("accept4",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT), false);
    private static final MethodHandle CONNECT = Native.downcall("connect",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT), false);
    private static final MethodHandle SENDMSG = Native.downcall("sendmsg",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT), false);
    private static final MethodHandle RECVMSG = Native.downcall("recvmsg",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT), false);

    private UnixSocket() {
    }

    /**
     * A listening socket bound to {@code path}. An existing socket file nobody listens on (left by a
     * crashed process) is removed first; a live one (a connect succeeds) or a non-socket file is
     * left alone and reported as EADDRINUSE.
     */
    public static int listen(String path, int backlog) {
        removeStale(path);
        int fd = socket(0);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment addr = sockaddr(a, path);
            MemorySegment s = Native.scratch();
            int r = (int) BIND.invokeExact(s, fd, addr, (int) SOCKADDR_UN_SIZE);
            if (r < 0) {
                int e = Native.errno(s);
                throw NativeException.of("bind", path, e, e == Errno.EADDRINUSE
                        ? "another process created " + path + " meanwhile" : null);
            }
            r = (int) LISTEN.invokeExact(s, fd, backlog);
            if (r < 0) {
                throw NativeException.of("listen", path, Native.errno(s));
            }
            return fd;
        } catch (Throwable t) {
            Fds.closeQuietly(fd);
            throw Native.rethrow(t);
        }
    }

    /** Accepts a connection (close-on-exec): the fd, or {@link Fds#WOULD_BLOCK} on a non-blocking listener. */
    public static int accept(int lfd) {
        MemorySegment s = Native.scratch();
        for (;;) {
            int fd;
            try {
                fd = (int) ACCEPT4.invokeExact(s, lfd, MemorySegment.NULL, MemorySegment.NULL, SOCK_CLOEXEC);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (fd >= 0) {
                return fd;
            }
            int e = Native.errno(s);
            if (e == Errno.EAGAIN) {
                return Fds.WOULD_BLOCK;
            }
            // ECONNABORTED: the peer gave up before we accepted; wait for the next one.
            if (e != Errno.EINTR && e != Errno.ECONNABORTED) {
                throw NativeException.of("accept4", "fd " + lfd, e);
            }
        }
    }

    /** A blocking stream socket connected to {@code path}. */
    public static int connect(String path) {
        int fd = socket(0);
        try {
            int e = connectRaw(fd, path);
            if (e != 0) {
                throw NativeException.of("connect", path, e, switch (e) {
                    case Errno.ENOENT -> "no socket at " + path + ": is the other side running and listening there?";
                    case Errno.ECONNREFUSED -> "nobody listens on " + path + " (a stale socket file?)";
                    case Errno.EACCES -> "no permission to connect to " + path + ": check its mode and owner";
                    default -> null;
                });
            }
            return fd;
        } catch (RuntimeException | Error t) {
            Fds.closeQuietly(fd);
            throw t;
        }
    }

    /**
     * A datagram socket (close-on-exec, blocking) connected to {@code path}; a path starting with
     * {@code @} names the abstract namespace (the {@code NOTIFY_SOCKET} convention of sd_notify(3)).
     * Send with {@link Fds#write}.
     */
    public static int connectDatagram(String path) {
        int fd = socket(SOCK_DGRAM, 0);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment addr = sockaddr(a, path);
            MemorySegment s = Native.scratch();
            int r = (int) CONNECT.invokeExact(s, fd, addr, sockaddrLength(path));
            if (r < 0) {
                throw NativeException.of("connect", path, Native.errno(s));
            }
            return fd;
        } catch (Throwable t) {
            Fds.closeQuietly(fd);
            throw Native.rethrow(t);
        }
    }

    /** A datagram socket (close-on-exec, blocking) bound to {@code path} ({@code @name}: abstract); read it with {@link Fds#read}. */
    public static int bindDatagram(String path) {
        int fd = socket(SOCK_DGRAM, 0);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment addr = sockaddr(a, path);
            MemorySegment s = Native.scratch();
            int r = (int) BIND.invokeExact(s, fd, addr, sockaddrLength(path));
            if (r < 0) {
                throw NativeException.of("bind", path, Native.errno(s));
            }
            return fd;
        } catch (Throwable t) {
            Fds.closeQuietly(fd);
            throw Native.rethrow(t);
        }
    }

    /** A connected pair of stream sockets (close-on-exec, blocking). */
    public static int[] socketPair() {
        MemorySegment s = Native.scratch();
        MemorySegment sv = s.asSlice(Native.SCRATCH_OFFSET, 8);
        int r;
        try {
            r = (int) SOCKETPAIR.invokeExact(s, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("socketpair", "AF_UNIX", Native.errno(s));
        }
        return new int[] {sv.get(JAVA_INT, 0), sv.get(JAVA_INT, 4)};
    }

    /**
     * Sends {@code len} bytes of {@code buf} with {@code fds} (null or empty: none; at most
     * {@link #MAX_FDS}) attached as SCM_RIGHTS: bytes sent or {@link Fds#WOULD_BLOCK}. The fds stay
     * open in this process. No SIGPIPE: a vanished peer is EPIPE.
     */
    public static long send(int fd, MemorySegment buf, long len, int[] fds) {
        if (fds != null && fds.length > MAX_FDS) {
            throw new IllegalArgumentException(fds.length + " fds in one message, at most " + MAX_FDS);
        }
        return sendUnchecked(fd, buf, len, fds);
    }

    /** {@link #send} without the fd-count limit: lets tests provoke MSG_CTRUNC at the receiver. */
    static long sendUnchecked(int fd, MemorySegment buf, long len, int[] fds) {
        Objects.checkFromIndexSize(0, len, buf.byteSize());
        int nfds = fds == null ? 0 : fds.length;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment msg = a.allocate(msghdr.layout());
            MemorySegment iov = Iovec.allocate(a, 1);
            Iovec.set(iov, 0, buf.address(), len);
            msg.set(ADDRESS, MSG_IOV, iov);
            msg.set(JAVA_LONG, MSG_IOVLEN, 1L);
            if (nfds > 0) {
                long space = cmsgSpace((long) Integer.BYTES * nfds);
                MemorySegment ctl = a.allocate(space, cmsghdr.layout().byteAlignment());
                ctl.set(JAVA_LONG, CMSG_LEN_FIELD, CMSG_HDR + (long) Integer.BYTES * nfds);
                ctl.set(JAVA_INT, CMSG_LEVEL, SOL_SOCKET);
                ctl.set(JAVA_INT, CMSG_TYPE, SCM_RIGHTS);
                for (int i = 0; i < nfds; i++) {
                    ctl.set(JAVA_INT, CMSG_HDR + (long) Integer.BYTES * i, fds[i]);
                }
                msg.set(ADDRESS, MSG_CONTROL, ctl);
                msg.set(JAVA_LONG, MSG_CONTROLLEN, space);
            }
            MemorySegment s = Native.scratch();
            for (;;) {
                long n = (long) SENDMSG.invokeExact(s, fd, msg, MSG_NOSIGNAL);
                if (n >= 0) {
                    return n;
                }
                int e = Native.errno(s);
                if (e == Errno.EAGAIN) {
                    return Fds.WOULD_BLOCK;
                }
                if (e != Errno.EINTR) {
                    throw NativeException.of("sendmsg", "fd " + fd + (nfds > 0 ? ", " + nfds + " fds" : ""), e);
                }
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * Receives up to {@code len} bytes into {@code buf}: bytes received, 0 on EOF, or
     * {@link Fds#WOULD_BLOCK}. fds that came with the bytes are stored at the start of
     * {@code fdsOut} (length ≥ {@link #MAX_FDS}), the rest set to -1; they are close-on-exec and
     * owned by the caller. {@code fdsOut} null: arriving fds are closed. If the sender attached more
     * fds than fit (MSG_CTRUNC) every fd that did arrive is closed and a NativeException (EMSGSIZE)
     * is thrown.
     */
    public static long recv(int fd, MemorySegment buf, long len, int[] fdsOut) {
        Objects.checkFromIndexSize(0, len, buf.byteSize());
        if (fdsOut != null) {
            if (fdsOut.length < MAX_FDS) {
                throw new IllegalArgumentException("fdsOut must hold " + MAX_FDS + " fds, has " + fdsOut.length);
            }
            Arrays.fill(fdsOut, -1);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment msg = a.allocate(msghdr.layout());
            MemorySegment iov = Iovec.allocate(a, 1);
            Iovec.set(iov, 0, buf.address(), len);
            long space = CMSG_SPACE_MAX_FDS;
            MemorySegment ctl = a.allocate(space, cmsghdr.layout().byteAlignment());
            MemorySegment s = Native.scratch();
            long n;
            for (;;) {
                msg.set(ADDRESS, MSG_IOV, iov);
                msg.set(JAVA_LONG, MSG_IOVLEN, 1L);
                msg.set(ADDRESS, MSG_CONTROL, ctl);
                msg.set(JAVA_LONG, MSG_CONTROLLEN, space);
                msg.set(JAVA_INT, MSG_FLAGS, 0);
                n = (long) RECVMSG.invokeExact(s, fd, msg, MSG_CMSG_CLOEXEC);
                if (n >= 0) {
                    break;
                }
                int e = Native.errno(s);
                if (e == Errno.EAGAIN) {
                    return Fds.WOULD_BLOCK;
                }
                if (e != Errno.EINTR) {
                    throw NativeException.of("recvmsg", "fd " + fd, e);
                }
            }
            int[] got = collectFds(ctl, msg.get(JAVA_LONG, MSG_CONTROLLEN));
            boolean truncated = (msg.get(JAVA_INT, MSG_FLAGS) & MSG_CTRUNC) != 0;
            if (truncated || fdsOut == null) {
                for (int f : got) {
                    Fds.closeQuietly(f);
                }
                if (truncated) {
                    throw NativeException.of("recvmsg", "fd " + fd, Errno.EMSGSIZE,
                            "control data truncated (MSG_CTRUNC): the peer attached more than " + MAX_FDS
                                    + " fds; the " + got.length + " that arrived were closed");
                }
            } else {
                System.arraycopy(got, 0, fdsOut, 0, got.length);
            }
            return n;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The SCM_RIGHTS fds in a received control buffer of {@code controllen} bytes. */
    private static int[] collectFds(MemorySegment ctl, long controllen) {
        int[] out = new int[MAX_FDS];
        int count = 0;
        long off = 0;
        while (off + CMSG_HDR <= controllen) {
            long clen = ctl.get(JAVA_LONG, off + CMSG_LEN_FIELD);
            if (clen < CMSG_HDR || off + clen > controllen) {
                break;
            }
            if (ctl.get(JAVA_INT, off + CMSG_LEVEL) == SOL_SOCKET && ctl.get(JAVA_INT, off + CMSG_TYPE) == SCM_RIGHTS) {
                int k = (int) ((clen - CMSG_HDR) / Integer.BYTES);
                for (int i = 0; i < k; i++) {
                    int f = ctl.get(JAVA_INT, off + CMSG_HDR + (long) Integer.BYTES * i);
                    if (count == out.length) {
                        out = Arrays.copyOf(out, out.length * 2);
                    }
                    out[count++] = f;
                }
            }
            off += cmsgAlign(clen);
        }
        return Arrays.copyOf(out, count);
    }

    /** {@code CMSG_ALIGN(v)}: rounds up to the control-message alignment (sizeof(size_t)). */
    private static long cmsgAlign(long v) {
        return (v + CMSG_ALIGN - 1) & -CMSG_ALIGN;
    }

    /** {@code CMSG_SPACE(dataLen)}. */
    private static long cmsgSpace(long dataLen) {
        return CMSG_HDR + cmsgAlign(dataLen);
    }

    private static int socket(int extraFlags) {
        return socket(SOCK_STREAM, extraFlags);
    }

    private static int socket(int type, int extraFlags) {
        MemorySegment s = Native.scratch();
        int fd;
        try {
            fd = (int) SOCKET.invokeExact(s, AF_UNIX, type | SOCK_CLOEXEC | extraFlags, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (fd < 0) {
            throw NativeException.of("socket", "AF_UNIX", Native.errno(s));
        }
        return fd;
    }

    /** connect(2), retrying EINTR: 0 or the errno. */
    private static int connectRaw(int fd, String path) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment addr = sockaddr(a, path);
            MemorySegment s = Native.scratch();
            boolean interrupted = false;
            for (;;) {
                int r = (int) CONNECT.invokeExact(s, fd, addr, (int) SOCKADDR_UN_SIZE);
                if (r == 0) {
                    return 0;
                }
                int e = Native.errno(s);
                if (e == Errno.EINTR) {
                    interrupted = true;
                    continue;
                }
                // After an interrupted connect the kernel may have completed it meanwhile.
                if (interrupted && e == Errno.EISCONN) {
                    return 0;
                }
                return e;
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static MemorySegment sockaddr(Arena a, String path) {
        byte[] p = path.getBytes(StandardCharsets.UTF_8);
        if (p.length == 0 || p.length >= SUN_PATH_MAX) {
            throw new IllegalArgumentException("unix socket path must be 1.." + (SUN_PATH_MAX - 1) + " bytes: " + path);
        }
        MemorySegment addr = a.allocate(sockaddr_un.layout());
        addr.set(JAVA_SHORT, SUN_FAMILY, (short) AF_UNIX);
        MemorySegment.copy(p, 0, addr, JAVA_BYTE, SUN_PATH_OFFSET, p.length);
        if (path.startsWith("@")) {
            addr.set(JAVA_BYTE, SUN_PATH_OFFSET, (byte) 0); // abstract namespace: a leading NUL, no file
        }
        return addr;
    }

    /** The address length: the whole struct for a path, exactly family + name for an abstract address. */
    private static int sockaddrLength(String path) {
        return path.startsWith("@") ? (int) (SUN_PATH_OFFSET + path.getBytes(StandardCharsets.UTF_8).length)
                : (int) SOCKADDR_UN_SIZE;
    }

    /** Removes {@code path} if it is a socket file nobody listens on; see {@link #listen}. */
    private static void removeStale(String path) {
        Path p = Path.of(path);
        BasicFileAttributes attrs;
        try {
            attrs = Files.readAttributes(p, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            return;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot inspect " + path, e);
        }
        if (!attrs.isOther()) {
            throw NativeException.of("bind", path, Errno.EADDRINUSE,
                    path + " exists and is not a socket: refusing to remove it, choose another socket path");
        }
        // A non-blocking probe: a live listener accepts (or reports a full backlog: EAGAIN).
        int probe = socket(SOCK_NONBLOCK);
        int e;
        try {
            e = connectRaw(probe, path);
        } finally {
            Fds.closeQuietly(probe);
        }
        if (e == 0 || e == Errno.EAGAIN || e == Errno.EINPROGRESS) {
            throw NativeException.of("bind", path, Errno.EADDRINUSE,
                    "another process is listening on " + path + ": stop it or choose another socket path");
        }
        if (e == Errno.ECONNREFUSED) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException io) {
                throw new UncheckedIOException("cannot remove stale socket " + path, io);
            }
        }
        // Anything else (EACCES, ...) is left for bind to report.
    }
}
