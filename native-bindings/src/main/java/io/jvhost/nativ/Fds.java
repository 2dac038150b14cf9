package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.jvhost.nativ.gen.Linux;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Objects;

/**
 * File-descriptor I/O: read/write/readv/writev, close, O_NONBLOCK, dup, pipe.
 *
 * <p>Data calls return the byte count (≥ 0) or {@link #WOULD_BLOCK} when a non-blocking fd has
 * nothing to give or no room (EAGAIN); EINTR is retried; any other errno throws a
 * {@link NativeException} without stack trace. They allocate nothing.
 *
 * <p>Buffers and iovec arrays must be native segments. iovec entries hold raw addresses: the caller
 * guarantees they point into live mappings for the duration of the call.
 *
 * <p>Thread-safe (errno is captured per thread); concurrent calls on one fd have the kernel's
 * semantics.
 */
public final class Fds {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    /** "No progress, try later" (EAGAIN); a negative value so it can never be a byte count. */
    public static final int WOULD_BLOCK = -Errno.EAGAIN;

    public static final int O_RDWR = Linux.O_RDWR();
    public static final int O_NONBLOCK = Linux.O_NONBLOCK();
    public static final int O_CLOEXEC = Linux.O_CLOEXEC();

    private static final int F_GETFL = Linux.F_GETFL();
    private static final int F_SETFL = Linux.F_SETFL();
    private static final int F_DUPFD_CLOEXEC = Linux.F_DUPFD_CLOEXEC();
    private static final int F_GET_SEALS = Linux.F_GET_SEALS();
    private static final int F_ADD_SEALS = Linux.F_ADD_SEALS();
    /** Seal: no more seals may be added. */
    public static final int F_SEAL_SEAL = Linux.F_SEAL_SEAL();
    /** Seal: the file cannot shrink (what makes a mapping of it safe from SIGBUS). */
    public static final int F_SEAL_SHRINK = Linux.F_SEAL_SHRINK();
    /** Seal: the file cannot grow. */
    public static final int F_SEAL_GROW = Linux.F_SEAL_GROW();
    /** Seal: the contents cannot be written. */
    public static final int F_SEAL_WRITE = Linux.F_SEAL_WRITE();

    private static final MethodHandle READ = Native.downcall("read",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG), false);
    private static final MethodHandle WRITE = Native.downcall("write",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG), false);
    private static final MethodHandle READV = Native.downcall("readv",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT), false);
    private static final MethodHandle WRITEV = Native.downcall("writev",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT), false);
    /*
     * Raw-address variants for the tap hot path: the iovec array is passed as a long, so the call
     * does not acquire/release the array segment's (shared) session — an atomic pair per call —
     * and, for fds that are O_NONBLOCK (a tap queue fd always is), may be linked critical (no
     * Java→native thread-state transition). See bench/RESULTS-perf.md for the measurements.
     */
    /*
     * They go through libc's syscall(2) (nr, fd, iov, iovcnt, all passed as longs, the variadic
     * part), not the readv/writev wrappers: those are thread-cancellation points, and glibc's
     * enable/disable-asynccancel pair around every call showed up as ~2 % of the RX worker's samples
     * (perf, bench/RESULTS-perf.md). Same errno capture.
     */
    static final long SYS_READ = 0;
    static final long SYS_READV = 19;
    static final long SYS_WRITEV = 20;
    private static final FunctionDescriptor RAW_IOV =
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle SYSCALL_IOV = Native.downcallAlways("syscall", RAW_IOV, false,
            Linker.Option.firstVariadicArg(1));
    private static final MethodHandle SYSCALL_IOV_CRITICAL = Native.downcallAlways("syscall", RAW_IOV, true,
            Linker.Option.firstVariadicArg(1));

    /**
     * Whether {@link #readvNonBlocking}/{@link #writevNonBlocking} are critical calls. Property
     * {@value #NB_CRITICAL_PROP_NAME}, default {@value #NB_CRITICAL_DEFAULT}.
     */
    public static final String NB_CRITICAL_PROP_NAME = "jvhost.native.criticalNonBlocking";
    public static final boolean NB_CRITICAL_DEFAULT = false;
    static final boolean NB_CRITICAL = Boolean.parseBoolean(
            System.getProperty(NB_CRITICAL_PROP_NAME, Boolean.toString(NB_CRITICAL_DEFAULT)));

    private static final MethodHandle CLOSE = Native.downcall("close",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT), false);
    /* fcntl is variadic: the third argument is declared variadic so the ABI sets up the call right. */
    private static final MethodHandle FCNTL = Native.downcall("fcntl",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT), true, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle PIPE2 = Native.downcall("pipe2",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT), true);

    private Fds() {
    }

    /** {@code read(fd, buf, len)}: bytes read (0 = EOF) or {@link #WOULD_BLOCK}. */
    public static long read(int fd, MemorySegment buf, long len) {
        Objects.checkFromIndexSize(0, len, buf.byteSize());
        MemorySegment s = Native.scratch();
        for (;;) {
            long n;
            try {
                n = (long) READ.invokeExact(s, fd, buf, len);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            if (failed(s, "read", fd) == WOULD_BLOCK) {
                return WOULD_BLOCK;
            }
        }
    }

    /** {@code write(fd, buf, len)}: bytes written or {@link #WOULD_BLOCK}. */
    public static long write(int fd, MemorySegment buf, long len) {
        Objects.checkFromIndexSize(0, len, buf.byteSize());
        MemorySegment s = Native.scratch();
        for (;;) {
            long n;
            try {
                n = (long) WRITE.invokeExact(s, fd, buf, len);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            if (failed(s, "write", fd) == WOULD_BLOCK) {
                return WOULD_BLOCK;
            }
        }
    }

    /** {@code readv(fd, iov, iovcnt)}: bytes read (0 = EOF) or {@link #WOULD_BLOCK}. */
    public static long readv(int fd, MemorySegment iov, int iovcnt) {
        Iovec.check(iov, iovcnt);
        MemorySegment s = Native.scratch();
        for (;;) {
            long n;
            try {
                n = (long) READV.invokeExact(s, fd, iov, iovcnt);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            if (failed(s, "readv", fd) == WOULD_BLOCK) {
                return WOULD_BLOCK;
            }
        }
    }

    /** {@code writev(fd, iov, iovcnt)}: bytes written or {@link #WOULD_BLOCK}. */
    public static long writev(int fd, MemorySegment iov, int iovcnt) {
        Iovec.check(iov, iovcnt);
        MemorySegment s = Native.scratch();
        for (;;) {
            long n;
            try {
                n = (long) WRITEV.invokeExact(s, fd, iov, iovcnt);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            if (failed(s, "writev", fd) == WOULD_BLOCK) {
                return WOULD_BLOCK;
            }
        }
    }

    /**
     * {@code readv} on an O_NONBLOCK fd with the iovec array at native address {@code iov}: bytes
     * read, or {@link #WOULD_BLOCK}. The caller guarantees the fd is non-blocking (a critical call
     * must not block: it would hold off safepoints) and that {@code iov} and its buffers are live.
     */
    public static long readvNonBlocking(int fd, long iov, int iovcnt) {
        return rawIo(NB_CRITICAL ? SYSCALL_IOV_CRITICAL : SYSCALL_IOV, SYS_READV, "readv", fd, iov, iovcnt);
    }

    /**
     * {@code read} of at most {@code len} bytes into native address {@code buf} on an O_NONBLOCK fd:
     * bytes read, or {@link #WOULD_BLOCK}. One buffer needs no iovec array: the kernel takes the
     * cheaper single-buffer path (no iovec import). Same caller guarantees as {@link #readvNonBlocking}.
     */
    public static long readNonBlocking(int fd, long buf, long len) {
        if (len < 0) {
            throw new IllegalArgumentException("read: len " + len);
        }
        return rawCall(NB_CRITICAL ? SYSCALL_IOV_CRITICAL : SYSCALL_IOV, SYS_READ, "read", fd, buf, len);
    }

    /** {@code writev} counterpart of {@link #readvNonBlocking}. */
    public static long writevNonBlocking(int fd, long iov, int iovcnt) {
        return rawIo(NB_CRITICAL ? SYSCALL_IOV_CRITICAL : SYSCALL_IOV, SYS_WRITEV, "writev", fd, iov, iovcnt);
    }

    /** {@link #writevNonBlocking} with the linkage chosen by the caller (benchmarks). */
    public static long writevNonBlocking(int fd, long iov, int iovcnt, boolean critical) {
        return rawIo(critical ? SYSCALL_IOV_CRITICAL : SYSCALL_IOV, SYS_WRITEV, "writev", fd, iov, iovcnt);
    }

    private static long rawIo(MethodHandle h, long nr, String what, int fd, long iov, int iovcnt) {
        if (iovcnt < 0 || iovcnt > Iovec.IOV_MAX) {
            throw new IllegalArgumentException(what + ": iovcnt " + iovcnt);
        }
        return rawCall(h, nr, what, fd, iov, iovcnt);
    }

    /** {@code syscall(nr, fd, addr, n)} retried on EINTR: the result, or {@link #WOULD_BLOCK}. */
    private static long rawCall(MethodHandle h, long nr, String what, int fd, long addr, long n2) {
        MemorySegment s = Native.scratch();
        for (;;) {
            long n;
            try {
                n = (long) h.invokeExact(s, nr, (long) fd, addr, n2);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n >= 0) {
                return n;
            }
            if (failed(s, what, fd) == WOULD_BLOCK) {
                return WOULD_BLOCK;
            }
        }
    }

    /**
     * The shared tail of the data calls after a negative return: EAGAIN → {@link #WOULD_BLOCK},
     * EINTR → 0 (the caller retries), anything else → {@link NativeException} (no stack trace).
     */
    private static long failed(MemorySegment scratch, String call, int fd) {
        int e = Native.errno(scratch);
        if (e == Errno.EAGAIN) {
            return WOULD_BLOCK;
        }
        if (e != Errno.EINTR) {
            throw NativeException.fast(call, fd, e);
        }
        return 0;
    }

    /**
     * {@code close(fd)}. EINTR is not retried: Linux has released the fd already and a retry could
     * close an fd another thread just got. Negative fds are ignored (a convenient "not open" value).
     */
    public static void close(int fd) {
        if (fd < 0) {
            return;
        }
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) CLOSE.invokeExact(s, fd);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            int e = Native.errno(s);
            if (e != Errno.EINTR) {
                throw NativeException.of("close", "fd " + fd, e);
            }
        }
    }

    /** Closes {@code fd}, swallowing errors; for cleanup paths that already report another failure. */
    public static void closeQuietly(int fd) {
        try {
            close(fd);
        } catch (RuntimeException ignored) {
            // cleanup only: the original failure is what matters
        }
    }

    /** Sets or clears O_NONBLOCK on {@code fd}. */
    public static void setNonBlocking(int fd, boolean on) {
        int fl = fcntl(fd, F_GETFL, 0, "F_GETFL");
        int nfl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
        if (nfl != fl) {
            fcntl(fd, F_SETFL, nfl, "F_SETFL");
        }
    }

    /** Whether O_NONBLOCK is set on {@code fd}. */
    public static boolean isNonBlocking(int fd) {
        return (fcntl(fd, F_GETFL, 0, "F_GETFL") & O_NONBLOCK) != 0;
    }

    /** A duplicate of {@code fd} (lowest free number, close-on-exec). */
    public static int dup(int fd) {
        return fcntl(fd, F_DUPFD_CLOEXEC, 0, "F_DUPFD_CLOEXEC");
    }

    /**
     * The seals of the file behind {@code fd} ({@code F_GET_SEALS}: a set of {@code F_SEAL_*}), or -1
     * when the file cannot be sealed at all (EINVAL: not a memfd / shmem / hugetlbfs file, or a memfd
     * created without MFD_ALLOW_SEALING reports {@link #F_SEAL_SEAL}).
     */
    public static int seals(int fd) {
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) FCNTL.invokeExact(s, fd, F_GET_SEALS, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            int e = Native.errno(s);
            if (e == Errno.EINVAL) {
                return -1;
            }
            throw NativeException.of("fcntl F_GET_SEALS", "fd " + fd, e);
        }
        return r;
    }

    /** {@code F_ADD_SEALS}: adds {@code seals} (a set of {@code F_SEAL_*}) to the file behind {@code fd}. */
    public static void addSeals(int fd, int seals) {
        fcntl(fd, F_ADD_SEALS, seals, "F_ADD_SEALS");
    }

    /** {@code pipe2(O_CLOEXEC [| O_NONBLOCK])}: {@code [readEnd, writeEnd]}. */
    public static int[] pipe(boolean nonBlocking) {
        MemorySegment s = Native.scratch();
        MemorySegment fds = s.asSlice(Native.SCRATCH_OFFSET, 8);
        int r;
        try {
            r = (int) PIPE2.invokeExact(s, fds, O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0));
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("pipe2", null, Native.errno(s));
        }
        return new int[] {fds.get(JAVA_INT, 0), fds.get(JAVA_INT, 4)};
    }

    private static int fcntl(int fd, int cmd, int arg, String what) {
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) FCNTL.invokeExact(s, fd, cmd, arg);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("fcntl " + what, "fd " + fd, Native.errno(s));
        }
        return r;
    }
}
