package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * poll(2) on a single fd, for control-plane waits with a timeout (e.g. a front-end waiting for a
 * reply). Allocates nothing; thread-safe.
 */
public final class Poll {
    public static final int POLLIN = 0x001;
    public static final int POLLPRI = 0x002;
    public static final int POLLOUT = 0x004;
    public static final int POLLERR = 0x008;
    public static final int POLLHUP = 0x010;
    public static final int POLLNVAL = 0x020;

    /* struct pollfd { int fd; short events; short revents; } */
    private static final long POLLFD_SIZE = 8;
    private static final long FD_OFFSET = 0;
    private static final long EVENTS_OFFSET = 4;
    private static final long REVENTS_OFFSET = 6;

    private static final MethodHandle POLL = Native.downcall("poll",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT), false);

    private Poll() {
    }

    /**
     * Waits up to {@code timeoutMs} (-1 = forever) for {@code events} on {@code fd}: the returned
     * events (may include POLLERR/POLLHUP/POLLNVAL), 0 on timeout or when a signal interrupted
     * the wait (callers loop on their own deadline).
     */
    public static int poll(int fd, int events, int timeoutMs) {
        MemorySegment s = Native.scratch();
        MemorySegment pfd = s.asSlice(Native.SCRATCH_OFFSET, POLLFD_SIZE);
        pfd.set(JAVA_INT, FD_OFFSET, fd);
        pfd.set(JAVA_SHORT, EVENTS_OFFSET, (short) events);
        pfd.set(JAVA_SHORT, REVENTS_OFFSET, (short) 0);
        int n;
        try {
            n = (int) POLL.invokeExact(s, pfd, 1L, timeoutMs);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (n > 0) {
            return Short.toUnsignedInt(pfd.get(JAVA_SHORT, REVENTS_OFFSET));
        }
        if (n == 0) {
            return 0;
        }
        int e = Native.errno(s);
        if (e == Errno.EINTR || e == Errno.EAGAIN) {
            return 0;
        }
        throw NativeException.of("poll", "fd " + fd, e);
    }
}
