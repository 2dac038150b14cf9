package io.jvhost.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class EventFdEpollTest {

    @Test
    void emptyNonBlockingEventFdDrainsZero() {
        int fd = EventFd.create(0, true);
        try {
            assertEquals(0, EventFd.drain(fd));
            EventFd.signal(fd);
            EventFd.signal(fd);
            EventFd.signal(fd);
            assertEquals(3, EventFd.drain(fd));
            assertEquals(0, EventFd.drain(fd));
        } finally {
            Fds.close(fd);
        }
    }

    @Test
    void initialValueIsReadable() {
        int fd = EventFd.create(5, true);
        try {
            assertEquals(5, EventFd.drain(fd));
        } finally {
            Fds.close(fd);
        }
    }

    @Test
    void epollWaitWithZeroTimeoutReturnsNothingWhenIdle() {
        int ep = Epoll.create();
        int ev = EventFd.create(0, true);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment events = Epoll.allocateEvents(a, 4);
            Epoll.add(ep, ev, Epoll.EPOLLIN, 0xfeed_0000_0001L);
            assertEquals(0, Epoll.wait(ep, events, 4, 0));
            EventFd.signal(ev);
            assertEquals(1, Epoll.wait(ep, events, 4, 0));
            assertEquals(Epoll.EPOLLIN, Epoll.events(events, 0));
            assertEquals(0xfeed_0000_0001L, Epoll.data(events, 0));
            Epoll.modify(ep, ev, Epoll.EPOLLIN, 77L);
            assertEquals(1, Epoll.wait(ep, events, 4, 0));
            assertEquals(77L, Epoll.data(events, 0));
            Epoll.remove(ep, ev);
            assertEquals(0, Epoll.wait(ep, events, 4, 0));
        } finally {
            Fds.close(ev);
            Fds.close(ep);
        }
    }

    @Test
    void secondEventLandsAtEventSizeStride() {
        int ep = Epoll.create();
        int a1 = EventFd.create(1, true);
        int a2 = EventFd.create(1, true);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment events = Epoll.allocateEvents(a, 2);
            Epoll.add(ep, a1, Epoll.EPOLLIN, 1L);
            Epoll.add(ep, a2, Epoll.EPOLLIN | Epoll.EPOLLOUT, -2L);
            assertEquals(2, Epoll.wait(ep, events, 2, 0));
            long d0 = Epoll.data(events, 0);
            long d1 = Epoll.data(events, 1);
            assertTrue((d0 == 1L && d1 == -2L) || (d0 == -2L && d1 == 1L), d0 + " " + d1);
        } finally {
            Fds.close(a1);
            Fds.close(a2);
            Fds.close(ep);
        }
    }

    @Test
    @Timeout(10)
    void eventFdWakesEpollWaiterInAnotherThread() throws Exception {
        int ep = Epoll.create();
        int kick = EventFd.create(0, true);
        int ack = EventFd.create(0, false);
        AtomicLong seen = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch waiting = new CountDownLatch(1);
        Thread worker = new Thread(() -> {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment events = Epoll.allocateEvents(a, 8);
                waiting.countDown();
                int rounds = 0;
                while (rounds < 3) {
                    int n = Epoll.wait(ep, events, 8, 5_000);
                    for (int i = 0; i < n; i++) {
                        if (Epoll.data(events, i) == 42L) {
                            seen.addAndGet(EventFd.drain(kick));
                            rounds++;
                            EventFd.signal(ack);
                        }
                    }
                    if (n == 0) {
                        throw new AssertionError("epoll_wait timed out without the kick");
                    }
                }
            } catch (Throwable t) {
                failure.set(t);
                EventFd.signal(ack);
            }
        }, "epoll-waiter");
        try {
            Epoll.add(ep, kick, Epoll.EPOLLIN, 42L);
            worker.start();
            assertTrue(waiting.await(5, TimeUnit.SECONDS));
            for (int i = 0; i < 3; i++) {
                EventFd.signal(kick);
                assertTrue(EventFd.drain(ack) >= 1); // blocking read: waits for the worker
                if (failure.get() != null) {
                    throw new AssertionError(failure.get());
                }
            }
            worker.join(5_000);
            assertEquals(3, seen.get());
        } finally {
            worker.join(5_000);
            Fds.close(kick);
            Fds.close(ack);
            Fds.close(ep);
        }
    }
}
