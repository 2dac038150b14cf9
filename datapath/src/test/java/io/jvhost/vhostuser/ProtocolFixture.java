package io.jvhost.vhostuser;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Stream;

/** One device served on a fresh socket, a driver-side RAM and helpers to set rings up. */
final class ProtocolFixture implements AutoCloseable {
    static final long RAM = 1 << 20;
    static final int RING = 256;

    final String path;
    final RecordingBackend backend;
    final VhostUserServer server;
    final DriverMemory mem;
    private final List<Integer> eventFds = new ArrayList<>();

    ProtocolFixture(int pairs, FeatureSet features) {
        this.path = "/tmp/jvhost-test-" + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".sock";
        this.backend = new RecordingBackend(pairs);
        this.server = VhostUserServer.listen("t" + pairs, path, backend, features);
        this.mem = DriverMemory.memfd("guest", RAM, DriverMemory.DEFAULT_GPA_BASE);
    }

    ProtocolFixture(int pairs) {
        this(pairs, FeatureSet.all());
    }

    VhostUserClient connect() {
        return VhostUserClient.connect(path);
    }

    /**
     * Everything offered but packed rings: these tests lay their rings out split, as the Java
     * driver does ({@code PackedRing} and {@code PackedEngineFuzzTest} test packed rings).
     */
    static final long SPLIT_RINGS = ~(1L << io.jvhost.virtio.VirtioFeatures.F_RING_PACKED);

    /** Negotiates everything offered but packed rings (REPLY_ACK included) and sends the memory table. */
    VhostUserClient connectReady() {
        VhostUserClient c = connect();
        c.negotiate(SPLIT_RINGS, -1L);
        c.setMemTable(List.of(mem.region()));
        return c;
    }

    int eventFd() {
        int fd = EventFd.create(0, true);
        eventFds.add(fd);
        return fd;
    }

    /** Ring addresses in driver RAM: desc, avail, used (user addresses). */
    long[] ringAddrs(int size) {
        long d = mem.alloc(16L * size, 4096);
        long a = mem.alloc(6L + 2L * size, 4096);
        long u = mem.alloc(6L + 8L * size, 4096);
        return new long[] {mem.userAddress(d), mem.userAddress(a), mem.userAddress(u)};
    }

    void setupRing(VhostUserClient c, int q, int base) {
        long[] a = ringAddrs(RING);
        c.setupRing(q, RING, base, a[0], a[1], a[2], eventFd(), eventFd());
    }

    /** The process's open eventfds, by number. */
    static java.util.Set<Integer> openEventFds() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            java.util.Set<Integer> out = new java.util.TreeSet<>();
            s.forEach(p -> {
                try {
                    if (Files.readSymbolicLink(p).toString().equals("anon_inode:[eventfd]")) {
                        out.add(Integer.parseInt(p.getFileName().toString()));
                    }
                } catch (IOException | RuntimeException gone) {
                    // closed while listing (the listing's own fd among them)
                }
            });
            return out;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static long openFds() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Raises the vhostuser loggers' threshold to {@code level} until closed: for tests that open
     * thousands of sessions or send thousands of bad messages on purpose.
     */
    static AutoCloseable quietLogs(java.util.logging.Level level) {
        java.util.logging.Logger jul = java.util.logging.Logger.getLogger("io.jvhost.vhostuser");
        java.util.logging.Level saved = jul.getLevel();
        jul.setLevel(level);
        return () -> jul.setLevel(saved);
    }

    static void awaitTrue(java.util.function.BooleanSupplier cond, long timeoutMs, String what) {
        long end = System.currentTimeMillis() + timeoutMs;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > end) {
                throw new AssertionError("timed out waiting for: " + what);
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }
    }

    @Override
    public void close() {
        server.close();
        mem.close();
        for (int fd : eventFds) {
            Fds.closeQuietly(fd);
        }
    }
}
