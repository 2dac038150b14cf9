package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.jvhost.nativ.gen.Linux;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * eventfd(2): vhost-user kick/call/error notifiers.
 *
 * <p>{@link #signal} and {@link #drain} allocate nothing (the 8-byte counter lives in the calling
 * thread's scratch segment). Thread-safe.
 */
public final class EventFd {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    public static final int EFD_CLOEXEC = Linux.EFD_CLOEXEC();
    public static final int EFD_NONBLOCK = Linux.EFD_NONBLOCK();

    private static final long COUNTER_SIZE = 8;

    private static final MethodHandle EVENTFD = Native.downcall("eventfd",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT), true);
    /*
     * Adding 1 to an eventfd blocks only when the counter would overflow 2^64-2, i.e. never in
     * practice, so the signalling write may be a critical (no thread transition) call.
     */
    private static final MethodHandle SIGNAL_WRITE = Native.downcall("write",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG), true);
    /* The fd may be blocking (a caller's choice), so the read must not be critical. */
    private static final MethodHandle DRAIN_READ = Native.downcall("read",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG), false);

    private EventFd() {
    }

    /** A new eventfd (close-on-exec, optionally non-blocking) with counter {@code initval}. */
    public static int create(int initval, boolean nonBlocking) {
        MemorySegment s = Native.scratch();
        int fd;
        try {
            fd = (int) EVENTFD.invokeExact(s, initval, EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0));
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (fd < 0) {
            throw NativeException.of("eventfd", null, Native.errno(s));
        }
        return fd;
    }

    /** Adds 1 to the counter, waking a poller. A saturated counter (EAGAIN) is already "signalled". */
    public static void signal(int fd) {
        MemorySegment s = Native.scratch();
        MemorySegment one = s.asSlice(Native.SCRATCH_OFFSET, COUNTER_SIZE);
        one.set(JAVA_LONG, 0, 1L);
        for (;;) {
            long n;
            try {
                n = (long) SIGNAL_WRITE.invokeExact(s, fd, one, COUNTER_SIZE);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n >= 0) {
                return;
            }
            int e = Native.errno(s);
            if (e == Errno.EAGAIN) {
                return;
            }
            if (e != Errno.EINTR) {
                throw NativeException.fast("eventfd write", fd, e);
            }
        }
    }

    /**
     * Reads and resets the counter: the count accumulated since the last drain, or 0 when there was
     * none (non-blocking fd). On a blocking fd this waits for a signal.
     */
    public static long drain(int fd) {
        MemorySegment s = Native.scratch();
        MemorySegment counter = s.asSlice(Native.SCRATCH_OFFSET, COUNTER_SIZE);
        for (;;) {
            long n;
            try {
                n = (long) DRAIN_READ.invokeExact(s, fd, counter, COUNTER_SIZE);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (n == COUNTER_SIZE) {
                return counter.get(JAVA_LONG, 0);
            }
            if (n >= 0) {
                throw new IllegalStateException("eventfd read(fd " + fd + ") returned " + n + " bytes: not an eventfd?");
            }
            int e = Native.errno(s);
            if (e == Errno.EAGAIN) {
                return 0;
            }
            if (e != Errno.EINTR) {
                throw NativeException.fast("eventfd read", fd, e);
            }
        }
    }
}
