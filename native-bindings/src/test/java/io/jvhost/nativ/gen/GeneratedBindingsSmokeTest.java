package io.jvhost.nativ.gen;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The generated downcalls link and run against this libc (symbol lookup through the default
 * lookup, descriptors accepted by the linker). Only harmless calls on fds the test creates itself.
 */
@Timeout(30)
class GeneratedBindingsSmokeTest {

    @Test
    void getpidIsThisProcess() {
        assertEquals(ProcessHandle.current().pid(), Linux.getpid());
    }

    @Test
    @SuppressWarnings("restricted") // reinterpret: strerror returns a zero-length pointer segment
    void strerrorNamesEagain() {
        String text = Linux.strerror(Linux.EAGAIN()).reinterpret(256).getString(0);
        assertFalse(text.isBlank(), "strerror(EAGAIN) is empty");
    }

    @Test
    void eventfdWritesAndReadsThroughGeneratedCalls() {
        int fd = Linux.eventfd(0, Linux.EFD_NONBLOCK() | Linux.EFD_CLOEXEC());
        assertTrue(fd >= 0, "eventfd failed: " + fd);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(ValueLayout.JAVA_LONG);
            // Nothing written yet: a non-blocking read reports -1 (EAGAIN), it does not block.
            assertEquals(-1L, Linux.read(fd, buf, 8));
            buf.set(ValueLayout.JAVA_LONG, 0, 3L);
            assertEquals(8L, Linux.write(fd, buf, 8));
            buf.set(ValueLayout.JAVA_LONG, 0, 0L);
            MemorySegment iov = iovec.allocate(arena);
            iovec.iov_base(iov, buf);
            iovec.iov_len(iov, 8);
            assertEquals(8L, Linux.readv(fd, iov, 1));
            assertEquals(3L, buf.get(ValueLayout.JAVA_LONG, 0));
        } finally {
            assertEquals(0, Linux.close(fd));
        }
    }

    @Test
    void epollReportsReadableEventfdInPackedEvent() {
        int ep = Linux.epoll_create1(Linux.EPOLL_CLOEXEC());
        int fd = Linux.eventfd(1, Linux.EFD_NONBLOCK() | Linux.EFD_CLOEXEC());
        assertTrue(ep >= 0 && fd >= 0, "epoll_create1/eventfd failed: " + ep + ", " + fd);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ev = epoll_event.allocate(arena);
            epoll_event.events(ev, Linux.EPOLLIN());
            // epoll_event is packed (data at byte 4), but epoll_data's own layout is 8-aligned: its
            // accessors reject the misaligned slice. Access data unaligned at data$offset() instead.
            assertThrows(IllegalArgumentException.class,
                    () -> epoll_data.u64(epoll_event.data(ev), 1L));
            assertEquals(4L, epoll_event.data$offset());
            ev.set(ValueLayout.JAVA_LONG_UNALIGNED, epoll_event.data$offset(), 0x1122_3344_5566_7788L);
            assertEquals(0, Linux.epoll_ctl(ep, Linux.EPOLL_CTL_ADD(), fd, ev));
            MemorySegment out = epoll_event.allocateArray(2, arena);
            assertEquals(1, Linux.epoll_wait(ep, out, 2, 1000));
            assertEquals(Linux.EPOLLIN(), epoll_event.events(out) & Linux.EPOLLIN());
            // The kernel wrote the 12-byte packed struct: data starts at byte 4.
            assertEquals(0x1122_3344_5566_7788L, out.get(ValueLayout.JAVA_LONG_UNALIGNED, 4));
            assertEquals(12L, epoll_event.sizeof());
        } finally {
            Linux.close(fd);
            Linux.close(ep);
        }
    }
}
