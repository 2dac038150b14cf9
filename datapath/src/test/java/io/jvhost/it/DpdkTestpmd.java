package io.jvhost.it;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * DPDK 22.11 testpmd as a real peer, run through {@code tools/testpmd} (no hugepages, no PCI):
 * either DPDK's vhost-user back-end forwarding to a tap — a stand-in for jvhost that proves the
 * tooling — or DPDK's virtio-user front-end in txonly / rxonly mode, a second real front-end for jvhost.
 *
 * <p>Stopping sends SIGTERM; testpmd then prints its forward statistics, which {@link #stop} parses
 * into {@link PortStats} per port (vhost role: port 0 = vhost, port 1 = tap; virtio-user role:
 * port 0 = virtio-user).
 *
 * <p>Note: testpmd busy-polls one core while it runs; keep its runs short.
 *
 * <p>Threading: confined to the test thread, except the output reader owned by {@link LineProcess}.
 */
public final class DpdkTestpmd implements AutoCloseable {
    /** Forward statistics of one port at the end of the run. */
    public record PortStats(long rx, long rxDropped, long tx, long txDropped) {
    }

    private static final Pattern PORT_LINE =
            Pattern.compile("TESTPMD-PORT (\\d+) rx=(\\d+) rx-dropped=(\\d+) tx=(\\d+) tx-dropped=(\\d+)");

    private final LineProcess proc;
    private Map<Integer, PortStats> stats;

    private DpdkTestpmd(LineProcess proc) {
        this.proc = proc;
    }

    /** Why testpmd cannot run here, or null when it can. */
    public static String unavailableReason() {
        if (!Cmd.onPath("dpdk-testpmd")) {
            return "dpdk-testpmd not installed (Debian package dpdk; tools/install-deps)";
        }
        if (!Cmd.isRoot()) {
            return "testpmd's net_tap and EAL need root";
        }
        return null;
    }

    /**
     * DPDK's vhost-user back-end on {@code socket} (server, or with {@code client} a reconnecting
     * client) io-forwarding to and from a new tap {@code tap}. Returns once forwarding runs (the
     * tap exists and, in server mode, the socket listens).
     */
    public static DpdkTestpmd vhostBackend(Path socket, String tap, boolean client, int queues) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(Cmd.tool("testpmd").toString(), "vhost", "--socket", socket.toString(),
                "--tap", tap, "--queues", Integer.toString(queues)));
        if (client) {
            cmd.add("--client");
        }
        return started("testpmd-vhost", cmd);
    }

    /**
     * DPDK's virtio-user front-end on {@code socket} in {@code mode} (txonly, rxonly, io), frames
     * of {@code pktLen} bytes; with {@code server} it listens instead of connecting. A non-zero
     * {@code duration} stops it by itself after that long ({@link #awaitStats}).
     */
    public static DpdkTestpmd virtioUser(Path socket, boolean server, String mode, int pktLen, int queues, Duration duration)
            throws IOException, InterruptedException {
        return virtioUser(socket, server, mode, pktLen, queues, 0, duration);
    }

    /**
     * As above with the ring size ({@code queueSize} > 0: the vdev's {@code queue_size}) and extra
     * testpmd application arguments (e.g. {@code --enable-lro}, which makes virtio-user negotiate
     * GUEST_TSO4/6).
     */
    public static DpdkTestpmd virtioUser(Path socket, boolean server, String mode, int pktLen, int queues, int queueSize,
                                         Duration duration, String... appArgs) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(Cmd.tool("testpmd").toString(), "virtio-user", "--socket", socket.toString(),
                "--mode", mode, "--pkt-len", Integer.toString(pktLen), "--queues", Integer.toString(queues),
                "--duration", Long.toString(duration.toSeconds())));
        if (server) {
            cmd.add("--server");
        }
        if (queueSize > 0) {
            cmd.addAll(List.of("--queue-size", Integer.toString(queueSize)));
        }
        if (appArgs.length > 0) {
            cmd.add("--");
            cmd.addAll(List.of(appArgs));
        }
        return started("testpmd-virtio-user", cmd);
    }

    /**
     * DPDK's virtio-user front-end with a given ring format: {@code packed} asks for packed
     * virtqueues ({@code packed_vq=1}), {@code inOrder} sets {@code in_order} (DPDK 22.11 asks for
     * IN_ORDER unless told not to). Otherwise as {@link #virtioUser(Path, boolean, String, int, int, int, Duration, String...)}.
     */
    public static DpdkTestpmd virtioUser(Path socket, boolean server, String mode, int pktLen, int queues, boolean packed,
                                         boolean inOrder, Duration duration) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(Cmd.tool("testpmd").toString(), "virtio-user", "--socket", socket.toString(),
                "--mode", mode, "--pkt-len", Integer.toString(pktLen), "--queues", Integer.toString(queues),
                "--duration", Long.toString(duration.toSeconds()), "--in-order", inOrder ? "1" : "0"));
        if (server) {
            cmd.add("--server");
        }
        if (packed) {
            cmd.add("--packed");
        }
        return started("testpmd-virtio-user", cmd);
    }

    private static DpdkTestpmd started(String name, List<String> cmd) throws IOException, InterruptedException {
        LineProcess p = LineProcess.start(name, cmd, Cmd.logDir().resolve(name + "-" + Cmd.randomHex(3) + ".log"));
        DpdkTestpmd t = new DpdkTestpmd(p);
        try {
            p.awaitLine(l -> l.equals("TESTPMD-STARTED"), 0, Duration.ofSeconds(60), "TESTPMD-STARTED");
        } catch (AssertionError | InterruptedException e) {
            p.close();
            throw e;
        }
        return t;
    }

    /** Waits for a line of testpmd's log containing {@code text} at or after line {@code from}; returns its index. */
    public int awaitLog(String text, int from, Duration timeout) throws InterruptedException {
        return proc.awaitLine(l -> l.contains(text), from, timeout, "\"" + text + "\"");
    }

    /** Output line {@code index} (as {@link #awaitLog} returned it). */
    public String logLine(int index) {
        return proc.lines().get(index);
    }

    /** Number of output lines so far (a starting point for {@link #awaitLog}). */
    public int logLines() {
        return proc.lineCount();
    }

    /** Stops testpmd (SIGTERM → it stops forwarding and reports) and returns the final port statistics. */
    public Map<Integer, PortStats> stop() throws InterruptedException {
        if (stats == null) {
            int rc = proc.stop(Duration.ofSeconds(30));
            stats = parse(rc);
        }
        return stats;
    }

    /** For a run with a duration: waits for testpmd to finish by itself and returns the final statistics. */
    public Map<Integer, PortStats> awaitStats(Duration timeout) throws InterruptedException {
        if (stats == null) {
            int rc = proc.awaitExit(timeout);
            stats = parse(rc);
        }
        return stats;
    }

    private Map<Integer, PortStats> parse(int rc) {
        Map<Integer, PortStats> m = new TreeMap<>();
        for (String l : proc.lines()) {
            Matcher x = PORT_LINE.matcher(l);
            if (x.find()) {
                m.put(Integer.parseInt(x.group(1)), new PortStats(Long.parseLong(x.group(2)), Long.parseLong(x.group(3)),
                        Long.parseLong(x.group(4)), Long.parseLong(x.group(5))));
            }
        }
        if (m.isEmpty()) {
            throw new AssertionError("testpmd (exit " + rc + ") printed no port statistics\n" + proc.tail(40));
        }
        return m;
    }

    /**
     * SIGKILLs dpdk-testpmd itself (not the wrapper script), as a crash would: no statistics, a
     * listening virtio-user's socket file stays behind. Returns once the wrapper has ended.
     */
    public void crash() throws InterruptedException {
        proc.process().toHandle().descendants()
                .filter(h -> h.info().command().map(c -> c.endsWith("dpdk-testpmd")).orElse(false))
                .forEach(ProcessHandle::destroyForcibly);
        proc.awaitExit(Duration.ofSeconds(30));
    }

    public String tail(int n) {
        return proc.tail(n);
    }

    public boolean isAlive() {
        return proc.isAlive();
    }

    @Override
    public void close() {
        proc.close();
    }
}
