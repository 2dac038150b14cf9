package io.jvhost.it;

import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.device.NetDevice;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserClientMode;
import io.jvhost.vhostuser.VhostUserServer;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * jvhost in the test's own JVM, wired the way {@code tools/jvhost} (io.jvhost.cli.Main) wires it: a
 * {@link NetDevice} on a new tap behind a {@link VhostUserServer} (jvhost listens) or a
 * {@link VhostUserClientMode} (the front-end listens; jvhost reconnects). In-process so the test
 * can read the device's counters and negotiated features directly.
 *
 * <p>The tap is created in the test's namespace; move it into a {@link NetNs} afterwards — the
 * device keeps working through its fds. {@link #close()} ends the session, the workers and the tap.
 *
 * <p>Threading: create and close on the test thread; {@link #stats()} and the accessors from any thread.
 */
public final class Jvhost implements AutoCloseable {
    private final NetDevice device;
    private final AutoCloseable endpoint;
    private final VhostUserServer server;
    private final VhostUserClientMode client;

    private Jvhost(NetDevice device, VhostUserServer server, VhostUserClientMode client) {
        this.device = device;
        this.server = server;
        this.client = client;
        this.endpoint = server != null ? server : client;
    }

    /** jvhost listening on {@code socket} (QEMU / virtio-user connect), serving tap {@code tap}. */
    public static Jvhost server(Path socket, String tap, int queuePairs, FeatureSet features) {
        NetDevice d = new NetDevice(NetDevice.Config.of("it", tap, queuePairs));
        try {
            return new Jvhost(d, VhostUserServer.listen("it", socket.toString(), d, features), null);
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /** jvhost connecting to the front-end's socket {@code socket} and reconnecting when it goes away. */
    public static Jvhost client(Path socket, String tap, int queuePairs, FeatureSet features) {
        NetDevice d = new NetDevice(NetDevice.Config.of("it", tap, queuePairs));
        try {
            return new Jvhost(d, null, VhostUserClientMode.connect("it", socket.toString(), d, features));
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    public NetDevice device() {
        return device;
    }

    /** The server endpoint, or null in client mode. */
    public VhostUserServer server() {
        return server;
    }

    /** The client-mode endpoint, or null in server mode. */
    public VhostUserClientMode client() {
        return client;
    }

    /** Whether a front-end is connected now. */
    public boolean sessionActive() {
        return server != null ? server.sessionActive() : client.sessionActive();
    }

    public List<QueueStats> stats() {
        return device.stats();
    }

    /** Sum of {@code c} over all queue pairs. */
    public long total(Counter c) {
        long s = 0;
        for (QueueStats q : device.stats()) {
            s += q.get(c);
        }
        return s;
    }

    /** Sum of every drop reason over all queue pairs. */
    public long totalDrops() {
        long s = 0;
        for (QueueStats q : device.stats()) {
            s += q.totalDrops();
        }
        return s;
    }

    /** The counters as the CLI prints them (for assertion messages). */
    public String table() {
        return StatsRenderer.table(device.stats());
    }

    /** Polls {@code cond} every 50 ms until it holds or {@code timeout} passes; returns its last value. */
    public static boolean await(BooleanSupplier cond, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                return cond.getAsBoolean();
            }
            Thread.sleep(50);
        }
        return true;
    }

    @Override
    public void close() {
        try {
            endpoint.close();
        } catch (Exception e) {
            System.err.println("jvhost IT: closing the endpoint: " + e);
        } finally {
            device.close();
        }
    }
}
