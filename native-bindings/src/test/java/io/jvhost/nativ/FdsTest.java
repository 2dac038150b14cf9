package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class FdsTest {
    private Arena arena;
    private int[] pipe;

    @BeforeEach
    void setUp() {
        arena = Arena.ofConfined();
        pipe = Fds.pipe(true);
    }

    @AfterEach
    void tearDown() {
        Fds.closeQuietly(pipe[0]);
        Fds.closeQuietly(pipe[1]);
        arena.close();
    }

    @Test
    void emptyNonBlockingPipeWouldBlock() {
        MemorySegment buf = arena.allocate(64);
        assertEquals(Fds.WOULD_BLOCK, Fds.read(pipe[0], buf, 64));
        MemorySegment iov = Iovec.allocate(arena, 1);
        Iovec.set(iov, 0, buf.address(), 64);
        assertEquals(Fds.WOULD_BLOCK, Fds.readv(pipe[0], iov, 1));
    }

    @Test
    void fullNonBlockingPipeWouldBlockOnWrite() {
        MemorySegment buf = arena.allocate(65536);
        long total = 0;
        long n;
        while ((n = Fds.write(pipe[1], buf, buf.byteSize())) != Fds.WOULD_BLOCK) {
            assertTrue(n > 0);
            total += n;
            assertTrue(total < (64L << 20), "pipe never filled");
        }
        assertTrue(total > 0);
    }

    @Test
    void writevGathersAndReadvScatters() {
        byte[] msg = "hello, vectored world!".getBytes(StandardCharsets.US_ASCII);
        MemorySegment src = arena.allocate(msg.length);
        MemorySegment.copy(msg, 0, src, JAVA_BYTE, 0, msg.length);
        // Three pieces: 5 + 7 + rest.
        MemorySegment out = Iovec.allocate(arena, 3);
        Iovec.set(out, 0, src.address(), 5);
        Iovec.set(out, 1, src.address() + 5, 7);
        Iovec.set(out, 2, src.address() + 12, msg.length - 12);
        assertEquals(msg.length, Fds.writev(pipe[1], out, 3));
        assertEquals(src.address() + 5, Iovec.base(out, 1));
        assertEquals(7, Iovec.len(out, 1));

        MemorySegment a = arena.allocate(10);
        MemorySegment b = arena.allocate(100);
        MemorySegment in = Iovec.allocate(arena, 2);
        Iovec.set(in, 0, a.address(), 10);
        Iovec.set(in, 1, b.address(), 100);
        assertEquals(msg.length, Fds.readv(pipe[0], in, 2));
        byte[] got = new byte[msg.length];
        MemorySegment.copy(a, JAVA_BYTE, 0, got, 0, 10);
        MemorySegment.copy(b, JAVA_BYTE, 0, got, 10, msg.length - 10);
        assertArrayEquals(msg, got);
        assertEquals(Fds.WOULD_BLOCK, Fds.readv(pipe[0], in, 2));
    }

    @Test
    void rawReadTakesAtMostLenAndWouldBlockWhenEmpty() {
        byte[] msg = "0123456789".getBytes(StandardCharsets.US_ASCII);
        MemorySegment src = arena.allocate(msg.length);
        MemorySegment.copy(msg, 0, src, JAVA_BYTE, 0, msg.length);
        assertEquals(msg.length, Fds.write(pipe[1], src, msg.length));
        MemorySegment dst = arena.allocate(16);
        assertEquals(4, Fds.readNonBlocking(pipe[0], dst.address(), 4));
        assertEquals(6, Fds.readNonBlocking(pipe[0], dst.address() + 4, 12));
        byte[] got = new byte[msg.length];
        MemorySegment.copy(dst, JAVA_BYTE, 0, got, 0, msg.length);
        assertArrayEquals(msg, got);
        assertEquals(Fds.WOULD_BLOCK, Fds.readNonBlocking(pipe[0], dst.address(), 16));
        assertThrows(IllegalArgumentException.class, () -> Fds.readNonBlocking(pipe[0], dst.address(), -1));
        NativeException e = assertThrows(NativeException.class, () -> Fds.readNonBlocking(-1, dst.address(), 1));
        assertEquals(Errno.EBADF, e.errno());
    }

    @Test
    void iovecCountIsBoundsChecked() {
        MemorySegment iov = Iovec.allocate(arena, 2);
        assertThrows(IndexOutOfBoundsException.class, () -> Fds.readv(pipe[0], iov, 3));
        MemorySegment buf = arena.allocate(8);
        assertThrows(IndexOutOfBoundsException.class, () -> Fds.read(pipe[0], buf, 9));
    }

    @Test
    void eofReadsZero() {
        Fds.close(pipe[1]);
        pipe[1] = -1;
        assertEquals(0, Fds.read(pipe[0], arena.allocate(8), 8));
    }

    @Test
    void badFdThrowsWithCallFdAndErrno() {
        int fd = Fds.dup(pipe[0]);
        Fds.close(fd);
        NativeException e = assertThrows(NativeException.class, () -> Fds.read(fd, arena.allocate(8), 8));
        assertEquals(Errno.EBADF, e.errno());
        assertEquals("read", e.call());
        assertEquals("read(fd " + fd + "): EBADF: Bad file descriptor", e.getMessage());
        NativeException w = assertThrows(NativeException.class, () -> Fds.writev(fd, Iovec.allocate(arena, 1), 1));
        assertTrue(w.getMessage().startsWith("writev(fd " + fd + "): EBADF"), w.getMessage());
    }

    @Test
    void nonBlockingFlagToggles() {
        assertTrue(Fds.isNonBlocking(pipe[0]));
        Fds.setNonBlocking(pipe[0], false);
        assertFalse(Fds.isNonBlocking(pipe[0]));
        Fds.setNonBlocking(pipe[0], true);
        assertTrue(Fds.isNonBlocking(pipe[0]));
    }

    @Test
    void dupSharesTheFile() {
        int d = Fds.dup(pipe[1]);
        try {
            assertNotEquals(pipe[1], d);
            MemorySegment b = arena.allocate(1);
            b.set(JAVA_BYTE, 0, (byte) 7);
            assertEquals(1, Fds.write(d, b, 1));
            b.set(JAVA_BYTE, 0, (byte) 0);
            assertEquals(1, Fds.read(pipe[0], b, 1));
            assertEquals(7, b.get(JAVA_BYTE, 0));
        } finally {
            Fds.close(d);
        }
    }

    @Test
    void pollSeesReadiness() {
        assertEquals(0, Poll.poll(pipe[0], Poll.POLLIN, 10));
        assertEquals(Poll.POLLOUT, Poll.poll(pipe[1], Poll.POLLOUT, 0));
        MemorySegment b = arena.allocate(1);
        assertEquals(1, Fds.write(pipe[1], b, 1));
        assertEquals(Poll.POLLIN, Poll.poll(pipe[0], Poll.POLLIN, 1000));
        Fds.close(pipe[1]);
        pipe[1] = -1;
        assertTrue((Poll.poll(pipe[0], Poll.POLLIN, 1000) & Poll.POLLHUP) != 0);
    }
}
