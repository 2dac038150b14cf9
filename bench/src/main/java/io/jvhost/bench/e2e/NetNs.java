package io.jvhost.bench.e2e;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One private network namespace per measured run, holding the tap the contender creates. The
 * namespace keeps bench traffic off the host's stack; deleting it removes whatever tap is left.
 * Addresses (fixed, private to the namespace): the tap is {@link #HOST_IP}, the "guest" behind
 * the back-end is {@link #GUEST_IP} with a permanent neighbour entry for {@link #GUEST_MAC}, so
 * no ARP is needed and frames leave through the tap at once.
 */
final class NetNs implements AutoCloseable {
    static final String HOST_IP = "10.99.0.1";
    static final String GUEST_IP = "10.99.0.2";
    static final String GUEST_MAC = "02:00:00:00:00:02";
    /** The tap's own MAC (set by the harness) so GSO frames addressed to the host are taken up the stack. */
    static final String TAP_MAC = "02:00:00:00:00:01";
    /** Prefix of every namespace this harness creates; bench/run-e2e's EXIT trap removes them all. */
    static final String PREFIX = "jvbench";

    final String name;
    final String tap;

    private NetNs(String name, String tap) {
        this.name = name;
        this.tap = tap;
    }

    static NetNs create(String runTag) throws IOException, InterruptedException {
        String suffix = Integer.toHexString(ThreadLocalRandom.current().nextInt(1 << 20, 1 << 24));
        NetNs ns = new NetNs(PREFIX + "-" + runTag + "-" + suffix, "jvb" + suffix);
        Procs.run(10, "ip", "netns", "add", ns.name);
        Procs.run(10, "ip", "-n", ns.name, "link", "set", "lo", "up");
        return ns;
    }

    /**
     * Niceness of every bench process (E2eMain {@code --nice=N}, default 0). A negative value gives
     * the bench a larger CPU share on a machine shared with other jobs, at their expense.
     */
    static volatile int nice;

    /** Command prefix running {@code cmd} inside the namespace pinned to {@code cpus} (exec chain keeps the pid). */
    List<String> exec(String cpus, List<String> cmd) {
        List<String> c = new ArrayList<>();
        if (nice != 0) {
            c.addAll(List.of("nice", "-n", Integer.toString(nice)));
        }
        c.addAll(List.of("taskset", "-c", cpus, "ip", "netns", "exec", name));
        c.addAll(cmd);
        return c;
    }

    /** Waits for the contender to create the tap, then brings it up with the bench addressing. */
    void configureTap(long timeoutMs, Process owner) throws IOException, InterruptedException {
        long end = System.nanoTime() + timeoutMs * 1_000_000;
        while (true) {
            try {
                Procs.run(10, "ip", "-n", name, "link", "show", tap);
                break;
            } catch (IOException notYet) {
                if (System.nanoTime() > end || !owner.isAlive()) {
                    throw new IOException("tap " + tap + " did not appear in " + name
                            + (owner.isAlive() ? "" : " (contender exited " + owner.exitValue() + ")"));
                }
                Thread.sleep(50);
            }
        }
        Procs.run(10, "ip", "-n", name, "link", "set", tap, "address", TAP_MAC);
        Procs.run(10, "ip", "-n", name, "link", "set", tap, "up");
        Procs.run(10, "ip", "-n", name, "addr", "add", HOST_IP + "/24", "dev", tap);
        Procs.run(10, "ip", "-n", name, "neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC, "dev", tap,
                "nud", "permanent");
    }

    /** The tap's kernel-side counters. rx = frames the back-end wrote, tx = frames it read. */
    record Counters(long rxPackets, long rxBytes, long txPackets, long txBytes, long txDropped, long nanoTime) {
    }

    private static final Pattern RX = Pattern.compile(
            "\"rx\":\\{\"bytes\":(\\d+),\"packets\":(\\d+)");
    private static final Pattern TX = Pattern.compile(
            "\"tx\":\\{\"bytes\":(\\d+),\"packets\":(\\d+),\"errors\":\\d+,\"dropped\":(\\d+)");

    Counters counters() throws IOException, InterruptedException {
        String j = Procs.run(10, "ip", "-n", name, "-s", "-j", "link", "show", "dev", tap);
        long t = System.nanoTime();
        Matcher rx = RX.matcher(j);
        Matcher tx = TX.matcher(j);
        if (!rx.find() || !tx.find()) {
            throw new IOException("cannot parse tap counters: " + j);
        }
        return new Counters(Long.parseLong(rx.group(2)), Long.parseLong(rx.group(1)),
                Long.parseLong(tx.group(2)), Long.parseLong(tx.group(1)), Long.parseLong(tx.group(3)), t);
    }

    @Override
    public void close() {
        try {
            Procs.run(20, "ip", "netns", "del", name);
        } catch (IOException | InterruptedException e) {
            System.err.println("e2e: could not delete netns " + name + ": " + e.getMessage());
        }
    }
}
