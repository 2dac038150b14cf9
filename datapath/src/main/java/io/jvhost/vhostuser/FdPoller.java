package io.jvhost.vhostuser;

import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.Poll;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * Waits for file descriptors without holding a thread in a system call: one platform thread
 * ({@code jvhost-poller}) sleeps in {@code epoll_wait} for every waiter of the process and unparks the
 * one whose fd became ready — the JDK's own virtual-thread poller, for raw fds (the JDK's cannot take
 * an fd that carries SCM_RIGHTS messages).
 *
 * <p>This is what lets each device's control loop run on a virtual thread: a virtual thread that
 * blocked in {@code poll(2)} or {@code epoll_wait(2)} would pin its carrier (native calls do) and a
 * few idle front-ends would stall every other device's control. Parked in {@link Waiter#await} it
 * holds nothing, so the process has a fixed number of control threads however many devices it serves,
 * and an idle one never wakes up (no periodic ticks: a loop that must stop is woken with
 * {@link Waiter#wake}).
 *
 * <p>Threading: {@link Waiter#await} from its owner thread (platform or virtual), {@link Waiter#wake}
 * from any thread. A waiter waits for one fd at a time; an fd has at most one waiter at a time.
 */
public final class FdPoller {
    private static final System.Logger LOG = System.getLogger(FdPoller.class.getName());
    private static final int MAX_EVENTS = 64;

    private final int ep;
    private final ConcurrentHashMap<Long, Waiter> waiting = new ConcurrentHashMap<>();
    private final AtomicLong tokens = new AtomicLong();

    private FdPoller() {
        this.ep = Epoll.create();
        Thread t = Thread.ofPlatform().name("jvhost-poller").daemon().unstarted(this::run);
        t.start();
    }

    /** The process's poller (started on first use; never stopped: a daemon thread asleep in epoll). */
    private static final class Shared {
        static final FdPoller POLLER = new FdPoller();
    }

    private void run() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment events = Epoll.allocateEvents(arena, MAX_EVENTS);
            while (true) {
                int n = Epoll.wait(ep, events, MAX_EVENTS, -1);
                for (int i = 0; i < n; i++) {
                    Waiter w = waiting.get(Epoll.data(events, i));
                    if (w != null) {
                        w.ready = true;
                        LockSupport.unpark(w.owner);
                    }
                }
            }
        } catch (RuntimeException | Error e) {
            LOG.log(System.Logger.Level.ERROR, "jvhost-poller failed; control loops fall back to timed polls", e);
            broken = true;
            for (Waiter w : waiting.values()) {
                LockSupport.unpark(w.owner);
            }
        }
    }

    /** Set when the poller thread died: waiters then poll the fd themselves every {@value #FALLBACK_MS} ms. */
    private volatile boolean broken;
    private static final int FALLBACK_MS = 100;

    /**
     * Waits until {@code fd} is ready for {@code events} ({@link Poll#POLLIN} / {@link Poll#POLLOUT})
     * or {@code timeoutMs} passed (negative: no limit). For callers that need no {@link Waiter#wake}; a
     * platform thread simply waits in {@code poll(2)}.
     *
     * @return true when ready, false on timeout
     */
    public static boolean await(int fd, int events, long timeoutMs) {
        if (!Thread.currentThread().isVirtual()) {
            // A platform thread may as well wait in the kernel.
            return Poll.poll(fd, events, (int) Math.min(timeoutMs < 0 ? -1 : timeoutMs, Integer.MAX_VALUE)) != 0;
        }
        Waiter w = new Waiter();
        long deadline = timeoutMs < 0 ? Long.MAX_VALUE : System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            long left = timeoutMs < 0 ? -1 : TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime() + 999_999);
            if (timeoutMs >= 0 && left <= 0) {
                return Poll.poll(fd, events, 0) != 0;
            }
            if (w.await(fd, events, left)) {
                return true;
            }
        }
    }

    /**
     * One thread's place to wait for an fd; {@link #wake} ends its current (or next) wait early, so a
     * loop can wait without a timeout and still be stopped.
     */
    public static final class Waiter {
        private volatile Thread owner;
        private volatile boolean ready;
        private volatile boolean woken;

        /**
         * Parks the calling thread until {@code fd} is ready for {@code events}, {@code timeoutMs}
         * passed (negative: no limit), or {@link #wake} was called.
         *
         * @return true when the fd is ready (a read or write will not block), false otherwise
         */
        public boolean await(int fd, int events, long timeoutMs) {
            if (Poll.poll(fd, events, 0) != 0) {
                return true;
            }
            if (woken) {
                woken = false;
                return false;
            }
            FdPoller p = Shared.POLLER;
            if (p.broken) {
                return Poll.poll(fd, events, (int) (timeoutMs < 0 ? FALLBACK_MS : Math.min(timeoutMs, FALLBACK_MS))) != 0;
            }
            owner = Thread.currentThread();
            ready = false;
            long token = p.tokens.incrementAndGet();
            p.waiting.put(token, this);
            int interest = ((events & Poll.POLLIN) != 0 ? Epoll.EPOLLIN : 0)
                    | ((events & Poll.POLLOUT) != 0 ? Epoll.EPOLLOUT : 0) | Epoll.EPOLLONESHOT;
            try {
                Epoll.add(p.ep, fd, interest, token);
                try {
                    long deadline = timeoutMs < 0 ? 0 : System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
                    // Parks return early without reason too: wait on until an answer.
                    while (!ready && !woken && !p.broken) {
                        if (timeoutMs < 0) {
                            LockSupport.park(this);
                        } else {
                            long left = deadline - System.nanoTime();
                            if (left <= 0) {
                                break;
                            }
                            LockSupport.parkNanos(this, left);
                        }
                    }
                } finally {
                    try {
                        Epoll.remove(p.ep, fd);
                    } catch (RuntimeException e) {
                        // closed meanwhile by another thread: epoll dropped it itself
                    }
                }
            } finally {
                p.waiting.remove(token);
            }
            woken = false;
            return ready || Poll.poll(fd, events, 0) != 0;
        }

        /** Ends the owner's current wait (or its next one, if it is not waiting). Any thread. */
        public void wake() {
            woken = true;
            Thread t = owner;
            if (t != null) {
                LockSupport.unpark(t);
            }
        }
    }
}
