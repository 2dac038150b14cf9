package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The ring accessors against a non-blocking pipe: ordering, wrap-around, errors in CQEs, links. */
@Timeout(30)
class IoUringTest {
    private Arena arena;
    private int[] pipe;
    private IoUring ring;

    @BeforeEach
    void setUp() {
        String why = IoUring.unavailableReason();
        Assumptions.assumeTrue(why == null, "io_uring unavailable here: " + why);
        arena = Arena.ofConfined();
        pipe = Fds.pipe(true);
        ring = IoUring.create(8);
    }

    @AfterEach
    void tearDown() {
        if (ring != null) {
            ring.close();
            ring.close(); // idempotent
        }
        if (pipe != null) {
            Fds.closeQuietly(pipe[0]);
            Fds.closeQuietly(pipe[1]);
        }
        if (arena != null) {
            arena.close();
        }
    }

    @Test
    void geometry() {
        assertEquals(8, ring.sqEntries());
        assertTrue(ring.cqEntries() >= 8);
        assertEquals(8, ring.sqSpace());
        assertEquals(0, ring.completions());
    }

    /** Many batches through an 8-entry ring: indices wrap, every byte arrives in submission order. */
    @Test
    void batchedWritevInOrderAcrossWrapAround() {
        MemorySegment iovs = Iovec.allocate(arena, 8);
        MemorySegment bufs = arena.allocate(8 * 16L);
        MemorySegment in = arena.allocate(8 * 16L);
        int seq = 0;
        for (int batch = 0; batch < 50; batch++) {
            int n = 1 + batch % 8;
            for (int i = 0; i < n; i++) {
                MemorySegment b = bufs.asSlice(i * 16L, 16);
                b.fill((byte) (seq + i));
                Iovec.set(iovs, i, b.address(), 16);
                assertTrue(ring.prepare(IoUring.OP_WRITEV, pipe[1], iovs.address() + i * Iovec.SIZE, 1, 0, 0, 1000 + i));
            }
            assertEquals(n, ring.prepared());
            assertEquals(n, ring.submit(0));
            assertEquals(0, ring.prepared());
            assertEquals(n, ring.completions());
            for (int i = 0; i < n; i++) {
                assertEquals(1000 + i, ring.cqeUserData(i));
                assertEquals(16, ring.cqeRes(i));
            }
            ring.consume(n);
            assertEquals(0, ring.completions());
            assertEquals(8, ring.sqSpace());
            assertEquals(16L * n, Fds.read(pipe[0], in, 16L * n));
            for (int i = 0; i < n; i++) {
                assertEquals((byte) (seq + i), in.get(JAVA_BYTE, i * 16L));
                assertEquals((byte) (seq + i), in.get(JAVA_BYTE, i * 16L + 15));
            }
            seq += n;
        }
    }

    /** SQEs prepared but not submitted can be dropped: they never reach the kernel, later batches go out alone. */
    @Test
    void discardPreparedDropsUnsubmittedSqes() {
        MemorySegment iov = Iovec.allocate(arena, 1);
        MemorySegment b = arena.allocate(1);
        b.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) 7);
        Iovec.set(iov, 0, b.address(), 1);
        for (int i = 0; i < 3; i++) {
            assertTrue(ring.prepare(IoUring.OP_WRITEV, pipe[1], iov.address(), 1, 0, 0, i));
        }
        assertEquals(3, ring.discardPrepared());
        assertEquals(0, ring.prepared());
        assertEquals(8, ring.sqSpace());
        assertTrue(ring.prepare(IoUring.OP_WRITEV, pipe[1], iov.address(), 1, 0, 0, 42));
        assertEquals(1, ring.submit(1));
        assertEquals(1, ring.completions());
        assertEquals(42, ring.cqeUserData(0));
        ring.consume(1);
        MemorySegment in = arena.allocate(16);
        assertEquals(1, Fds.read(pipe[0], in, 16), "only the SQE prepared after the discard was written");
        assertEquals(0, ring.discardPrepared());
    }

    @Test
    void fullSqRefusesPrepare() {
        MemorySegment iov = Iovec.allocate(arena, 1);
        Iovec.set(iov, 0, arena.allocate(1).address(), 1);
        for (int i = 0; i < 8; i++) {
            assertTrue(ring.prepare(IoUring.OP_WRITEV, pipe[1], iov.address(), 1, 0, 0, i));
        }
        assertFalse(ring.prepare(IoUring.OP_WRITEV, pipe[1], iov.address(), 1, 0, 0, 8));
        assertEquals(8, ring.submit(0));
        assertEquals(8, ring.completions());
        ring.consume(8);
    }

    /** RWF_NOWAIT on an empty pipe: READV completes at once with -EAGAIN (no poll armed in the kernel). */
    @Test
    void nowaitReadvOnEmptyFdCompletesWithEagain() {
        MemorySegment iov = Iovec.allocate(arena, 1);
        MemorySegment buf = arena.allocate(64);
        Iovec.set(iov, 0, buf.address(), 64);
        assertTrue(ring.prepare(IoUring.OP_READV, pipe[0], iov.address(), 1, 0, IoUring.RWF_NOWAIT, 7));
        assertEquals(1, ring.submit(0));
        assertEquals(1, ring.completions());
        assertEquals(7, ring.cqeUserData(0));
        assertEquals(-Errno.EAGAIN, ring.cqeRes(0));
        ring.consume(1);
    }

    /** A failing link member cancels the rest of the chain (the TX engine relies on it for order). */
    @Test
    void linkedChainStopsAtFirstError() {
        MemorySegment iov = Iovec.allocate(arena, 1);
        MemorySegment buf = arena.allocate(4);
        Iovec.set(iov, 0, buf.address(), 4);
        assertTrue(ring.prepare(IoUring.OP_WRITEV, pipe[1], iov.address(), 1, IoUring.SQE_IO_LINK, 0, 1));
        assertTrue(ring.prepare(IoUring.OP_WRITEV, -1, iov.address(), 1, IoUring.SQE_IO_LINK, 0, 2));
        assertTrue(ring.prepare(IoUring.OP_WRITEV, pipe[1], iov.address(), 1, 0, 0, 3));
        assertEquals(3, ring.submit(0));
        int got = ring.completions();
        if (got < 3) {
            assertEquals(0, ring.submit(3 - got)); // wait for the rest
        }
        assertEquals(3, ring.completions());
        int[] res = new int[4];
        for (int i = 0; i < 3; i++) {
            res[(int) ring.cqeUserData(i)] = ring.cqeRes(i);
        }
        ring.consume(3);
        assertEquals(4, res[1]);
        assertEquals(-Errno.EBADF, res[2]);
        assertEquals(-Errno.ECANCELED, res[3]);
        assertEquals(4, Fds.read(pipe[0], arena.allocate(64), 64));
    }
}
