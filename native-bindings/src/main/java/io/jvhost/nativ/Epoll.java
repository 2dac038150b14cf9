package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.epoll_event;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * epoll(7). {@link #wait} allocates nothing; registration calls (control plane) use the calling
 * thread's scratch segment for the {@code struct epoll_event} argument.
 *
 * <p>{@code struct epoll_event} is {@code __attribute__((packed))} on x86_64 (12 bytes, data at 4)
 * and naturally aligned elsewhere (16 bytes, data at 8); {@link #EVENT_SIZE} and the accessors
 * follow the running architecture.
 *
 * <p>Thread-safe; one epoll set is normally waited on by a single worker thread.
 */
public final class Epoll {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    public static final int EPOLLIN = Linux.EPOLLIN();
        public static final int EPOLLOUT = Linux.EPOLLOUT();
    public static final int EPOLLERR = Linux.EPOLLERR();
    public static final int EPOLLHUP = Linux.EPOLLHUP();
    public static final int EPOLLRDHUP = Linux.EPOLLRDHUP();
    public static final int EPOLLET = Linux.EPOLLET();
    /** Report the fd once, then disable it until {@link #modify} re-arms it (additive). */
    public static final int EPOLLONESHOT = Linux.EPOLLONESHOT();

    /** {@code sizeof(struct epoll_event)} on this architecture (from the generated layout). */
    public static final long EVENT_SIZE = epoll_event.sizeof();
    private static final long EVENTS_OFFSET = epoll_event.events$offset();
    /* data is a union (ptr/fd/u32/u64): every member starts at its offset. */
    private static final long DATA_OFFSET = epoll_event.data$offset();
    private static final ValueLayout.OfLong DATA = ValueLayout.JAVA_LONG_UNALIGNED;

    private static final int EPOLL_CLOEXEC = Linux.EPOLL_CLOEXEC();
    private static final int EPOLL_CTL_ADD = Linux.EPOLL_CTL_ADD();
    private static final int EPOLL_CTL_DEL = Linux.EPOLL_CTL_DEL();
    private static final int EPOLL_CTL_MOD = Linux.EPOLL_CTL_MOD();

    private static final MethodHandle CREATE = Native.downcall("epoll_create1",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT), true);
    private static final MethodHandle CTL = Native.downcall("epoll_ctl",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS), true);
    private static final MethodHandle WAIT = Native.downcall("epoll_wait",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), false);

    private Epoll() {
    }

    /** A new epoll set (close-on-exec). */
    public static int create() {
        MemorySegment s = Native.scratch();
        int fd;
        try {
            fd = (int) CREATE.invokeExact(s, EPOLL_CLOEXEC);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (fd < 0) {
            throw NativeException.of("epoll_create1", null, Native.errno(s));
        }
        return fd;
    }

    /** Registers {@code fd} for {@code events}; {@code data} comes back with each event. */
    public static void add(int ep, int fd, int events, long data) {
        ctl(ep, EPOLL_CTL_ADD, fd, events, data, "epoll_ctl ADD");
    }

    /** Changes the events/data of a registered {@code fd}. */
    public static void modify(int ep, int fd, int events, long data) {
        ctl(ep, EPOLL_CTL_MOD, fd, events, data, "epoll_ctl MOD");
    }

    /** Unregisters {@code fd}. */
    public static void remove(int ep, int fd) {
        ctl(ep, EPOLL_CTL_DEL, fd, 0, 0, "epoll_ctl DEL");
    }

    private static void ctl(int ep, int op, int fd, int events, long data, String what) {
        MemorySegment s = Native.scratch();
        MemorySegment ev = s.asSlice(Native.SCRATCH_OFFSET, EVENT_SIZE);
        ev.set(JAVA_INT, EVENTS_OFFSET, events);
        ev.set(DATA, DATA_OFFSET, data);
        int r;
        try {
            r = (int) CTL.invokeExact(s, ep, op, fd, ev);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of(what, "epfd " + ep + ", fd " + fd, Native.errno(s));
        }
    }

    /**
     * Waits up to {@code timeoutMs} (0 = poll, -1 = forever) for at most {@code max} events into
     * {@code events}: the number of ready events, 0 on timeout or EINTR.
     */
    public static int wait(int ep, MemorySegment events, int max, int timeoutMs) {
        if (max <= 0 || EVENT_SIZE * max > events.byteSize()) {
            throw new IndexOutOfBoundsException("max " + max + " events do not fit " + events.byteSize() + " bytes");
        }
        MemorySegment s = Native.scratch();
        int n;
        try {
            n = (int) WAIT.invokeExact(s, ep, events, max, timeoutMs);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (n >= 0) {
            return n;
        }
        int e = Native.errno(s);
        if (e == Errno.EINTR) {
            return 0;
        }
        throw NativeException.fast("epoll_wait", ep, e);
    }

    /** An event array for {@code n} events owned by {@code arena}. */
    public static MemorySegment allocateEvents(Arena arena, int n) {
        return arena.allocate(EVENT_SIZE * n, 8);
    }

    /** The ready-event mask of event {@code i}. */
    public static int events(MemorySegment events, int i) {
        return events.get(JAVA_INT, EVENT_SIZE * i + EVENTS_OFFSET);
    }

    /** The user data of event {@code i}. */
    public static long data(MemorySegment events, int i) {
        return events.get(DATA, EVENT_SIZE * i + DATA_OFFSET);
    }
}
