package io.jvhost.it;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A private network namespace for a test: the "host side" of a tap that a back-end (jvhost, or
 * DPDK as a stand-in) serves, isolated from the machine's own networking. Everything here goes
 * through {@code ip} and busybox ({@code ping}, {@code nc}) run inside the namespace.
 *
 * <p>IPv6 is off in the namespace (also on interfaces moved in), so the kernel sends no router
 * solicitations or DAD probes that would disturb packet counts. {@link #close()} kills what still
 * runs inside and deletes the namespace; a tap inside goes with it.
 *
 * <p>Threading: methods may be called from any thread; the object has no mutable state besides
 * the list of started processes (guarded by itself).
 */
public final class NetNs implements AutoCloseable {
    private static final Duration CMD_TIMEOUT = Duration.ofSeconds(30);
    private final String name;
    private final List<Process> started = new ArrayList<>();

    private NetNs(String name) {
        this.name = name;
    }

    /** Creates {@code jvit-<random>} with loopback up and IPv6 disabled. */
    public static NetNs create() {
        NetNs ns = new NetNs("jvit-" + Cmd.randomHex(4));
        Cmd.ok("ip", "netns", "add", ns.name);
        try {
            Cmd.ok("ip", "-n", ns.name, "link", "set", "lo", "up");
            ns.execOk("sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6");
        } catch (RuntimeException e) {
            ns.close();
            throw e;
        }
        return ns;
    }

    public String name() {
        return name;
    }

    /** Moves interface {@code ifname} from the current namespace into this one. */
    public NetNs moveIn(String ifname) {
        Cmd.ok("ip", "link", "set", ifname, "netns", name);
        execOk("sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6 || true");
        return this;
    }

    /** Adds {@code cidr} (e.g. 10.77.0.1/24) to {@code ifname} and sets it up. */
    public NetNs address(String ifname, String cidr) {
        Cmd.ok("ip", "-n", name, "addr", "add", cidr, "dev", ifname);
        return up(ifname);
    }

    public NetNs up(String ifname) {
        Cmd.ok("ip", "-n", name, "link", "set", ifname, "up");
        return this;
    }

    public NetNs mtu(String ifname, int mtu) {
        Cmd.ok("ip", "-n", name, "link", "set", ifname, "mtu", Integer.toString(mtu));
        return this;
    }

    /** A permanent neighbour entry: frames to {@code ip} go straight out with no ARP first. */
    public NetNs neighbour(String ifname, String ip, String mac) {
        Cmd.ok("ip", "-n", name, "neigh", "replace", ip, "lladdr", mac, "dev", ifname, "nud", "permanent");
        return this;
    }

    /** Runs a command inside the namespace. */
    public Cmd.Result exec(Duration timeout, String... cmd) {
        return Cmd.run(timeout, inside(cmd));
    }

    /** Runs a command inside the namespace, throwing unless it exits 0; returns its output. */
    public String execOk(String... cmd) {
        return exec(CMD_TIMEOUT, cmd).orThrow().output();
    }

    private List<String> inside(String... cmd) {
        List<String> l = new ArrayList<>(List.of("ip", "netns", "exec", name));
        l.addAll(List.of(cmd));
        return l;
    }

    /** busybox ping from inside the namespace: {@code count} echo requests, {@code interval} apart. */
    public Cmd.Result ping(String dst, int count, Duration interval, Duration deadline) {
        return exec(deadline.plusSeconds(10), "busybox", "ping", "-c", Integer.toString(count),
                "-i", String.format(java.util.Locale.ROOT, "%.3f", interval.toMillis() / 1000.0), "-w", Long.toString(deadline.toSeconds()), dst);
    }

    /** Packet/byte counters of an interface inside the namespace (kernel's view: rx = frames the back-end wrote into the tap). */
    public record LinkStats(long rxPackets, long rxBytes, long txPackets, long txBytes) {
    }

    public LinkStats linkStats(String ifname) {
        String[] v = execOk("sh", "-c", "cd /sys/class/net/" + ifname + "/statistics && cat rx_packets rx_bytes tx_packets tx_bytes")
                .strip().split("\\s+");
        return new LinkStats(Long.parseLong(v[0]), Long.parseLong(v[1]), Long.parseLong(v[2]), Long.parseLong(v[3]));
    }

    /** What one TCP connection carried: MD5 (lower-case hex) and length. */
    public record Received(String md5, long bytes) {
    }

    /**
     * Starts a TCP listener on {@code port} inside the namespace (busybox nc) that hashes what
     * one connection sends. Its stdin stays open: at EOF on stdin busybox nc half-closes, and a
     * busybox nc sender quits when it sees that, cutting the transfer short.
     */
    public TcpSink listen(int port) throws IOException {
        Process p = new ProcessBuilder(inside("busybox", "nc", "-l", "-p", Integer.toString(port)))
                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        track(p);
        return new TcpSink(p);
    }

    /** A running {@link #listen} that hashes the stream it receives. */
    public static final class TcpSink implements AutoCloseable {
        private final Process process;
        private final CompletableFuture<Received> result = new CompletableFuture<>();

        private TcpSink(Process p) {
            this.process = p;
            Thread.ofVirtual().start(() -> {
                try {
                    result.complete(digest(p.getInputStream()));
                } catch (IOException e) {
                    result.completeExceptionally(e);
                }
            });
        }

        /** Waits until the sender closed the connection; returns what arrived. */
        public Received await(Duration timeout) throws InterruptedException {
            try {
                return result.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                throw new AssertionError("TCP sink: sender did not finish within " + timeout);
            } catch (ExecutionException e) {
                throw new AssertionError("TCP sink failed", e.getCause());
            }
        }

        @Override
        public void close() {
            Cmd.killTree(process.toHandle());
        }
    }

    /**
     * {@link #send} on a virtual thread, for a stream that runs while the test does something else
     * (stops the back-end, reloads the guest's driver): completes when the receiver closed,
     * exceptionally (wrapped in IllegalStateException) when the send failed.
     */
    public java.util.concurrent.CompletableFuture<Void> sendAsync(String host, int port, byte[] data, Duration timeout) {
        return java.util.concurrent.CompletableFuture.runAsync(() -> {
            try {
                send(host, port, data, timeout);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }, r -> Thread.ofVirtual().start(r));
    }

    /**
     * Connects from inside the namespace to {@code host:port}, sends {@code data} and waits until
     * the receiver closes. Retries while the connection is refused (the peer may not listen yet).
     */
    public void send(String host, int port, byte[] data, Duration timeout) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Process p = new ProcessBuilder(inside("busybox", "nc", host, Integer.toString(port))).redirectErrorStream(true).start();
            track(p);
            CompletableFuture<byte[]> out = CompletableFuture.supplyAsync(() -> {
                try (InputStream in = p.getInputStream()) {
                    return in.readAllBytes();
                } catch (IOException e) {
                    return new byte[0];
                }
            }, r -> Thread.ofVirtual().start(r));
            try (OutputStream o = p.getOutputStream()) {
                o.write(data);
            } catch (IOException refusedEarly) {
                // nc already exited (connection refused): the pipe is closed; handled below
            }
            long left = deadline - System.nanoTime();
            if (!p.waitFor(Math.max(left, 1), TimeUnit.NANOSECONDS)) {
                Cmd.killTree(p.toHandle());
                throw new AssertionError("TCP send to " + host + ":" + port + " did not finish within " + timeout);
            }
            String msg = new String(out.join());
            if (p.exitValue() == 0) {
                return;
            }
            if (!msg.contains("can't connect") || System.nanoTime() > deadline) {
                throw new AssertionError("TCP send to " + host + ":" + port + " failed (exit " + p.exitValue() + "): " + msg);
            }
            Thread.sleep(500);
        }
    }

    /**
     * Connects from inside the namespace to {@code host:port} and hashes everything the peer sends
     * until it closes (stdin stays open meanwhile, for the reason given at {@link #listen}).
     */
    public Received receive(String host, int port, Duration timeout) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Process p = new ProcessBuilder(inside("busybox", "nc", host, Integer.toString(port)))
                    .redirectError(ProcessBuilder.Redirect.DISCARD).start();
            track(p);
            CompletableFuture<Received> r = CompletableFuture.supplyAsync(() -> {
                try {
                    return digest(p.getInputStream());
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            }, x -> Thread.ofVirtual().start(x));
            try {
                Received got = r.get(Math.max(deadline - System.nanoTime(), 1), TimeUnit.NANOSECONDS);
                p.waitFor(5, TimeUnit.SECONDS);
                if (got.bytes() > 0 || System.nanoTime() > deadline) {
                    p.getOutputStream().close();
                    return got;
                }
                Thread.sleep(500); // refused: nothing arrived, try again
            } catch (TimeoutException e) {
                Cmd.killTree(p.toHandle());
                throw new AssertionError("TCP receive from " + host + ":" + port + " did not finish within " + timeout);
            } catch (ExecutionException e) {
                throw new AssertionError("TCP receive failed", e.getCause());
            }
        }
    }

    private static Received digest(InputStream in) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("MD5");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        byte[] buf = new byte[65536];
        long n = 0;
        try (in) {
            int r;
            while ((r = in.read(buf)) > 0) {
                md.update(buf, 0, r);
                n += r;
            }
        }
        return new Received(HexFormat.of().formatHex(md.digest()), n);
    }

    /** MD5 of a byte array, lower-case hex (what the guest's md5sum prints). */
    public static String md5(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(data));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private void track(Process p) {
        synchronized (started) {
            started.add(p);
        }
    }

    /** Kills what this object started and anything else still inside, then deletes the namespace. */
    @Override
    public void close() {
        synchronized (started) {
            started.forEach(p -> Cmd.killTree(p.toHandle()));
            started.clear();
        }
        Cmd.Result pids = Cmd.run(CMD_TIMEOUT, "ip", "netns", "pids", name);
        if (pids.ok()) {
            for (String pid : pids.output().split("\\s+")) {
                if (!pid.isBlank()) {
                    ProcessHandle.of(Long.parseLong(pid.strip())).ifPresent(ProcessHandle::destroyForcibly);
                }
            }
        }
        Cmd.quiet("ip", "netns", "del", name);
    }
}
