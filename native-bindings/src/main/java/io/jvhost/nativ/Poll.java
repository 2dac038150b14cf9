package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.pollfd;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * poll(2) on a single fd, for control-plane waits with a timeout (e.g. a front-end waiting for a
 * reply). Allocates nothing; thread-safe.
 */
public final class Poll {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    public static final int POLLIN = Linux.POLLIN();
        public static final int POLLOUT = Linux.POLLOUT();
    public static final int POLLERR = Linux.POLLERR();
    public static final int POLLHUP = Linux.POLLHUP();
    public static final int POLLNVAL = Linux.POLLNVAL();

    private static final long POLLFD_SIZE = pollfd.sizeof();
    private static final long FD_OFFSET = pollfd.fd$offset();
    private static final long EVENTS_OFFSET = pollfd.events$offset();
    private static final long REVENTS_OFFSET = pollfd.revents$offset();

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
