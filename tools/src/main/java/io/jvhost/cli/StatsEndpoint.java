package io.jvhost.cli;

import io.jvhost.engine.WorkerPool;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import io.jvhost.device.NetDevice;
import io.jvhost.vhostuser.FdPoller;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A unix socket ({@code <socket-path>.stats}) on which a running back-end answers with its
 * per-queue counters and latency percentiles, and the load of the workers (shared by every device
 * of the process): a client sends {@code "json\n"} or {@code "table\n"} and reads until EOF. Served
 * by a virtual thread ({@code jvhost-<device>-stats}) that waits through the {@link FdPoller}: no OS
 * thread per device, no wake-up while nobody asks. Reading the counters never stops traffic (they are
 * single-writer values read with opaque loads).
 */
final class StatsEndpoint implements AutoCloseable {
    private static final int MAX_REQUEST = 64;

    private final String path;
    private final int listenFd;
    private final NetDevice device;
    private final WorkerPool pool;
    private final Thread thread;
    private final FdPoller.Waiter waiter = new FdPoller.Waiter();
    private volatile boolean running = true;

    private StatsEndpoint(String path, int listenFd, NetDevice device) {
        this.path = path;
        this.listenFd = listenFd;
        this.device = device;
        this.pool = device.pool();
        this.thread = Thread.ofVirtual().name("jvhost-" + device.name() + "-stats").unstarted(this::serve);
    }

    static StatsEndpoint start(String path, NetDevice device) {
        StatsEndpoint s = new StatsEndpoint(path, UnixSocket.listen(path, 4), device);
        Fds.setNonBlocking(s.listenFd, true);
        s.thread.start();
        return s;
    }

    private void serve() {
        while (running) {
            try {
                if (!waiter.await(listenFd, Poll.POLLIN, -1) || !running) {
                    continue;
                }
                int fd = UnixSocket.accept(listenFd);
                if (fd < 0) {
                    continue;
                }
                try {
                    answer(fd);
                } finally {
                    Fds.closeQuietly(fd);
                }
            } catch (NativeException e) {
                if (running) {
                    System.err.println("jvhost: stats endpoint: " + e.getMessage());
                }
            }
        }
    }

    private void answer(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment req = arena.allocate(MAX_REQUEST);
            String request = "";
            if (FdPoller.await(fd, Poll.POLLIN, 1000)) {
                long n = Fds.read(fd, req, MAX_REQUEST);
                if (n > 0) {
                    request = new String(req.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII).trim();
                }
            }
            String body = request.startsWith("json") ? StatsRenderer.json(device.stats(), pool.stats())
                    : StatsRenderer.table(device.stats()) + "\n" + StatsRenderer.workers(pool.stats());
            byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
            MemorySegment out = arena.allocate(Math.max(1, bytes.length));
            MemorySegment.copy(bytes, 0, out, ValueLayout.JAVA_BYTE, 0, bytes.length);
            long off = 0;
            while (off < bytes.length) {
                long w = Fds.write(fd, out.asSlice(off), bytes.length - off);
                if (w <= 0) {
                    break;
                }
                off += w;
            }
        }
    }

    /** Client side of {@code jvhost stats}: prints what the back-end answers. */
    static int query(String path, boolean json) {
        String body = fetch(path, json ? "json" : "table");
        if (body == null) {
            return 1;
        }
        System.out.print(body);
        return 0;
    }

    /** Asks the back-end at {@code path} for {@code request} ("json" or "table"); null (reported) when none answers. */
    static String fetch(String path, String request) {
        int fd;
        try {
            fd = UnixSocket.connect(path);
        } catch (NativeException e) {
            System.err.println("jvhost: no running back-end answers on " + path + " (" + e.getMessage()
                    + "); start one, or give its --socket-path / --stats-path");
            return null;
        }
        try (Arena arena = Arena.ofConfined()) {
            byte[] req = (request + "\n").getBytes(StandardCharsets.US_ASCII);
            MemorySegment buf = arena.allocate(1 << 16);
            MemorySegment.copy(req, 0, buf, ValueLayout.JAVA_BYTE, 0, req.length);
            Fds.write(fd, buf, req.length);
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            while (true) {
                long n = Fds.read(fd, buf, buf.byteSize());
                if (n <= 0) {
                    break;
                }
                out.write(buf.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE), 0, (int) n);
            }
            return out.toString(StandardCharsets.UTF_8);
        } finally {
            Fds.closeQuietly(fd);
        }
    }

    @Override
    public void close() {
        running = false;
        waiter.wake();
        try {
            thread.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Fds.closeQuietly(listenFd);
        try {
            Files.deleteIfExists(Path.of(path));
        } catch (IOException e) {
            System.err.println("jvhost: could not remove " + path + ": " + e.getMessage());
        }
    }
}
