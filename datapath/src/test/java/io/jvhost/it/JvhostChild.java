package io.jvhost.it;

import io.jvhost.device.NetDevice;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserServer;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * jvhost in a process of its own: a {@link NetDevice} on a new tap behind a {@link VhostUserServer},
 * wired as {@link Jvhost#server} wires it, in a child JVM started from the test's class path — for
 * tests that need two back-ends in two processes (live migration from one to the other). The
 * child prints {@value #READY} once it listens and ends when its stdin closes or on SIGTERM.
 *
 * <p>Threading: the handle's methods may be called from any test thread.
 */
public final class JvhostChild implements AutoCloseable {
    static final String READY = "JVHOST-CHILD-READY";
    /** What {@link io.jvhost.vhostuser.Session} logs when its front-end goes away. */
    private static final String DISCONNECTED = "front-end disconnected";

    private final LineProcess proc;

    private JvhostChild(LineProcess proc) {
        this.proc = proc;
    }

    /**
     * Starts a child jvhost listening on {@code socket} with tap {@code tap} and waits until it is
     * ready (the tap exists, the socket listens).
     *
     * @param disabled comma-separated feature names to switch off ("" for none)
     */
    public static JvhostChild start(Path socket, String tap, int queuePairs, String disabled, Duration timeout)
            throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), JvhostChild.class.getName(), socket.toString(), tap,
                Integer.toString(queuePairs), disabled.isEmpty() ? "-" : disabled));
        LineProcess p = LineProcess.start("jvhost-child[" + tap + "]", cmd,
                Cmd.logDir().resolve("jvhost-child-" + tap + ".log"));
        JvhostChild c = new JvhostChild(p);
        try {
            p.awaitLine(l -> l.contains(READY), 0, timeout, READY);
        } catch (AssertionError | InterruptedException e) {
            c.close();
            throw e;
        }
        return c;
    }

    /** Sessions that have ended so far (front-ends that disconnected). */
    public long sessionsEnded() {
        return proc.lines().stream().filter(l -> l.contains(DISCONNECTED)).count();
    }

    /** Waits until {@code n} sessions have ended. */
    public void awaitSessionsEnded(long n, Duration timeout) throws InterruptedException {
        if (!Jvhost.await(() -> sessionsEnded() >= n, timeout)) {
            throw new AssertionError("child jvhost: " + sessionsEnded() + " sessions ended, expected " + n + "\n"
                    + proc.tail(30));
        }
    }

    public String tail(int n) {
        return proc.tail(n);
    }

    @Override
    public void close() {
        try {
            proc.stdin().close(); // the child's cue to close its device cleanly
            proc.awaitExit(Duration.ofSeconds(20));
        } catch (IOException | AssertionError e) {
            // it did not end by itself: the kill below
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        proc.close();
    }

    /** The child: {@code socket tap queuePairs disabled|-}. */
    public static void main(String[] args) throws IOException {
        Path socket = Path.of(args[0]);
        String tap = args[1];
        int pairs = Integer.parseInt(args[2]);
        FeatureSet fs = "-".equals(args[3]) ? FeatureSet.all() : FeatureSet.all().without(args[3].split(","));
        NetDevice d = new NetDevice(NetDevice.Config.of("child", tap, pairs));
        VhostUserServer server;
        try {
            server = VhostUserServer.listen("child", socket.toString(), d, fs);
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
        Runnable shutdown = () -> {
            try {
                server.close();
            } finally {
                d.close();
            }
        };
        Thread hook = new Thread(shutdown, "jvhost-child-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        System.out.println(READY);
        System.out.flush();
        try (InputStream in = System.in) {
            while (in.read() >= 0) {
                // nothing is sent: EOF is the stop signal
            }
        }
        Runtime.getRuntime().removeShutdownHook(hook);
        shutdown.run();
    }
}
