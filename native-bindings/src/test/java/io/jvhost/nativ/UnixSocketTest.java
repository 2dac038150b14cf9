package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

class UnixSocketTest {
    @TempDir
    Path dir;

    private Arena arena;

    @BeforeEach
    void setUp() {
        arena = Arena.ofConfined();
    }

    @AfterEach
    void tearDown() {
        arena.close();
    }

    /** Sends a pipe's write end over {@code tx}, receives it on {@code rx} and proves it works. */
    private void passPipeWriteEnd(int tx, int rx) {
        int[] pipe = Fds.pipe(true);
        int[] got = new int[UnixSocket.MAX_FDS];
        try {
            MemorySegment msg = arena.allocate(4);
            msg.set(JAVA_INT, 0, 0x0a0b0c0d);
            assertEquals(4, UnixSocket.send(tx, msg, 4, new int[] {pipe[1]}));
            MemorySegment in = arena.allocate(16);
            assertEquals(4, UnixSocket.recv(rx, in, 16, got));
            assertEquals(0x0a0b0c0d, in.get(JAVA_INT, 0));
            assertTrue(got[0] >= 0);
            assertTrue(got[0] != pipe[1], "a new fd number in this process");
            for (int i = 1; i < got.length; i++) {
                assertEquals(-1, got[i]);
            }
            // The received fd is the same pipe: bytes written to it come out of the read end.
            MemorySegment b = arena.allocate(1);
            b.set(JAVA_BYTE, 0, (byte) 0x5a);
            assertEquals(1, Fds.write(got[0], b, 1));
            b.set(JAVA_BYTE, 0, (byte) 0);
            assertEquals(1, Fds.read(pipe[0], b, 1));
            assertEquals((byte) 0x5a, b.get(JAVA_BYTE, 0));
        } finally {
            Fds.closeQuietly(got[0]);
            Fds.close(pipe[0]);
            Fds.close(pipe[1]);
        }
    }

    @Test
    void scmRightsOverSocketPair() {
        int[] sp = UnixSocket.socketPair();
        try {
            passPipeWriteEnd(sp[0], sp[1]);
            passPipeWriteEnd(sp[1], sp[0]);
        } finally {
            Fds.close(sp[0]);
            Fds.close(sp[1]);
        }
    }

    @Test
    void eightFdsInOneMessageArriveInOrder() {
        int[] sp = UnixSocket.socketPair();
        int[] evs = new int[UnixSocket.MAX_FDS];
        int[] got = new int[UnixSocket.MAX_FDS];
        Arrays.fill(got, -1);
        try {
            for (int i = 0; i < evs.length; i++) {
                evs[i] = EventFd.create(i + 1, true);
            }
            MemorySegment msg = arena.allocate(1);
            assertEquals(1, UnixSocket.send(sp[0], msg, 1, evs));
            assertEquals(1, UnixSocket.recv(sp[1], msg, 1, got));
            for (int i = 0; i < got.length; i++) {
                assertEquals(i + 1, EventFd.drain(got[i]), "fd " + i + " is eventfd #" + i);
            }
        } finally {
            for (int i = 0; i < evs.length; i++) {
                Fds.closeQuietly(evs[i]);
                Fds.closeQuietly(got[i]);
            }
            Fds.close(sp[0]);
            Fds.close(sp[1]);
        }
    }

    @Test
    void tooManyFdsAreClosedAndReported() throws IOException {
        int[] sp = UnixSocket.socketPair();
        int[] evs = new int[UnixSocket.MAX_FDS + 2];
        try {
            for (int i = 0; i < evs.length; i++) {
                evs[i] = EventFd.create(0, true);
            }
            MemorySegment msg = arena.allocate(1);
            assertThrows(IllegalArgumentException.class, () -> UnixSocket.send(sp[0], msg, 1, evs));
            assertEquals(1, UnixSocket.sendUnchecked(sp[0], msg, 1, evs));
            long before = openFds();
            NativeException e = assertThrows(NativeException.class,
                    () -> UnixSocket.recv(sp[1], msg, 1, new int[UnixSocket.MAX_FDS]));
            assertEquals(Errno.EMSGSIZE, e.errno());
            assertTrue(e.getMessage().contains("MSG_CTRUNC"), e.getMessage());
            assertEquals(before, openFds(), "the fds that did arrive were closed");
        } finally {
            for (int fd : evs) {
                Fds.closeQuietly(fd);
            }
            Fds.close(sp[0]);
            Fds.close(sp[1]);
        }
    }

    @Test
    void fdsArrivingWithoutFdsOutAreClosed() throws IOException {
        int[] sp = UnixSocket.socketPair();
        int ev = EventFd.create(0, true);
        try {
            MemorySegment msg = arena.allocate(1);
            UnixSocket.send(sp[0], msg, 1, new int[] {ev});
            long before = openFds();
            assertEquals(1, UnixSocket.recv(sp[1], msg, 1, null));
            assertEquals(before, openFds());
        } finally {
            Fds.close(ev);
            Fds.close(sp[0]);
            Fds.close(sp[1]);
        }
    }

    @Test
    void nonBlockingRecvWouldBlockAndEofIsZero() {
        int[] sp = UnixSocket.socketPair();
        try {
            Fds.setNonBlocking(sp[1], true);
            MemorySegment b = arena.allocate(8);
            assertEquals(Fds.WOULD_BLOCK, UnixSocket.recv(sp[1], b, 8, new int[8]));
            Fds.close(sp[0]);
            sp[0] = -1;
            assertEquals(0, UnixSocket.recv(sp[1], b, 8, new int[8]));
        } finally {
            Fds.closeQuietly(sp[0]);
            Fds.close(sp[1]);
        }
    }

    @Test
    void sendToClosedPeerIsEpipeNotSignal() {
        int[] sp = UnixSocket.socketPair();
        Fds.close(sp[1]);
        try {
            MemorySegment b = arena.allocate(8);
            NativeException e = assertThrows(NativeException.class, () -> UnixSocket.send(sp[0], b, 8, null));
            assertEquals(Errno.EPIPE, e.errno());
        } finally {
            Fds.close(sp[0]);
        }
    }

    @Test
    @Timeout(10)
    void scmRightsThroughListeningPathSocket() throws Exception {
        String path = dir.resolve("vhost.sock").toString();
        int lfd = UnixSocket.listen(path, 4);
        int server = -1;
        int client = -1;
        try {
            CompletableFuture<Integer> accepted = CompletableFuture.supplyAsync(() -> UnixSocket.accept(lfd));
            client = UnixSocket.connect(path);
            server = accepted.get(5, TimeUnit.SECONDS);
            passPipeWriteEnd(client, server);
            passPipeWriteEnd(server, client);
        } finally {
            Fds.closeQuietly(client);
            Fds.closeQuietly(server);
            Fds.close(lfd);
        }
    }

    @Test
    void nonBlockingAcceptWouldBlock() {
        String path = dir.resolve("nb.sock").toString();
        int lfd = UnixSocket.listen(path, 1);
        try {
            Fds.setNonBlocking(lfd, true);
            assertEquals(Fds.WOULD_BLOCK, UnixSocket.accept(lfd));
        } finally {
            Fds.close(lfd);
        }
    }

    @Test
    void staleSocketFileIsReplacedLiveOneIsNot() {
        String path = dir.resolve("stale.sock").toString();
        int first = UnixSocket.listen(path, 1);
        // While it listens, a second listen must refuse and leave it alone.
        NativeException live = assertThrows(NativeException.class, () -> UnixSocket.listen(path, 1));
        assertEquals(Errno.EADDRINUSE, live.errno());
        assertTrue(live.getMessage().contains("another process is listening"), live.getMessage());
        Fds.close(first);
        assertTrue(Files.exists(Path.of(path)), "closing does not remove the socket file: it is stale now");
        int second = UnixSocket.listen(path, 1);
        try {
            int c = UnixSocket.connect(path);
            Fds.close(c);
        } finally {
            Fds.close(second);
        }
    }

    @Test
    void nonSocketFileIsNeverRemoved() throws IOException {
        Path file = dir.resolve("precious.txt");
        Files.writeString(file, "keep me");
        NativeException e = assertThrows(NativeException.class, () -> UnixSocket.listen(file.toString(), 1));
        assertTrue(e.getMessage().contains("is not a socket"), e.getMessage());
        assertEquals("keep me", Files.readString(file));
    }

    @Test
    void connectToMissingPathExplainsItself() {
        String path = dir.resolve("nobody.sock").toString();
        NativeException e = assertThrows(NativeException.class, () -> UnixSocket.connect(path));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().startsWith("connect(" + path + "): ENOENT: No such file or directory — "),
                e.getMessage());
        assertFalse(Files.exists(Path.of(path)));
    }

    private static long openFds() throws IOException {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        }
    }

    /** sd_notify's transport: a datagram to a path and to an abstract ({@code @name}) address. */
    @Test
    void datagramsReachAPathAndAnAbstractAddress() throws IOException {
        Path dir = Files.createTempDirectory("jvhost-dgram-");
        String[] addrs = {dir.resolve("notify").toString(), "@jvhost-test-" + ProcessHandle.current().pid() + "-" + System.nanoTime()};
        try (Arena a = Arena.ofConfined()) {
            for (String addr : addrs) {
                int rx = UnixSocket.bindDatagram(addr);
                int tx = UnixSocket.connectDatagram(addr);
                try {
                    byte[] msg = "READY=1".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
                    MemorySegment buf = a.allocate(64);
                    MemorySegment.copy(msg, 0, buf, JAVA_BYTE, 0, msg.length);
                    assertEquals(msg.length, Fds.write(tx, buf, msg.length));
                    MemorySegment in = a.allocate(64);
                    assertEquals(msg.length, Fds.read(rx, in, 64), addr);
                    assertEquals("READY=1", new String(in.asSlice(0, msg.length).toArray(JAVA_BYTE),
                            java.nio.charset.StandardCharsets.US_ASCII));
                } finally {
                    Fds.close(tx);
                    Fds.close(rx);
                }
            }
        } finally {
            Files.deleteIfExists(Path.of(addrs[0]));
            Files.deleteIfExists(dir);
        }
    }
}
