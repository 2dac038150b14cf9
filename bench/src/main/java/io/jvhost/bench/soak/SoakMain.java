package io.jvhost.bench.soak;

import io.jvhost.bench.e2e.DriverFront;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The memory soak: one jvhost process (started with {@code tools/jvhost}, so with the launcher's
 * memory policy) serving a front-end that disconnects and connects again every
 * {@code --reconnect-s} while it sends frames, for {@code --minutes}. Every {@code --sample-s} it
 * records what an operator would watch (RSS, PSS, open fds, mappings, threads) and what the JVM says
 * about itself (heap used and committed, Native Memory Tracking's committed total); after every
 * session it counts jvhost's fds again while no front-end is connected. Output: a table on stdout,
 * {@code samples.csv}, {@code sessions.csv}, {@code soak.md} (summary + table) and {@code soak.png}
 * (gnuplot) in {@code --out}. Started by {@code bench/run-soak}, which builds and cleans up.
 *
 * <pre>
 * SoakMain --out=DIR [--minutes=60] [--reconnect-s=30] [--sample-s=10] [--warmup-min=5]
 *          [--frontend=testpmd|java-driver|alternate] [--pkt-len=64] [--jvhost=tools/jvhost]
 *          [--java-opts="..."] [--nmt=summary|off] [--command="how it was started"]
 * SoakMain --out=DIR --idle=1,16,64 [--settle-s=20] [--jvhost=..] [--java-opts=..] [--nmt=..]
 * </pre>
 * {@code --idle}: for each count N, one jvhost with N devices (N {@code --socket-path}/{@code --tap}
 * pairs) and no front-end; after {@code --settle-s} the same readings, and RSS per device.
 *
 * <p>Traffic: TX only (front-end → tap), 64-byte UDP frames to a MAC nobody owns, as in the
 * issue's report: testpmd {@code txonly} through {@code tools/testpmd virtio-user}, or the Java
 * driver ({@link DriverFront} {@code --mode=tx}) in its own JVM. jvhost runs in its own network
 * namespace ({@value #NS_PREFIX}-&lt;tag&gt;-&lt;hex&gt;), deleted at the end. Single-threaded
 * apart from the sampler thread.
 */
public final class SoakMain {
    static final String NS_PREFIX = "jvsoak";
    private static final Pattern TESTPMD_TX = Pattern.compile("TESTPMD-PORT 0 rx=\\d+ rx-dropped=\\d+ tx=(\\d+)");
    private static final Pattern DRIVER_TX = Pattern.compile("RESULT frames=(\\d+)");
    private static final Pattern TAP_RX = Pattern.compile("\"rx\":\\{\"bytes\":\\d+,\"packets\":(\\d+)");

    private SoakMain() {
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = parse(argv);
        Path out = Path.of(req(a, "out"));
        Files.createDirectories(out);
        Path launcher = Path.of(a.getOrDefault("jvhost", "tools/jvhost"));
        String javaOpts = a.getOrDefault("java-opts", "");
        String nmt = a.getOrDefault("nmt", "summary");
        if (!nmt.equals("off")) {
            javaOpts = "-XX:NativeMemoryTracking=" + nmt + " " + javaOpts;
        }
        String command = a.getOrDefault("command", "SoakMain " + String.join(" ", argv));
        if (a.containsKey("idle")) {
            List<Integer> counts = Arrays.stream(a.get("idle").split(",")).map(String::strip).map(Integer::parseInt).toList();
            IdleDevices.run(out, launcher, javaOpts.strip(), counts, Integer.parseInt(a.getOrDefault("settle-s", "20")), command);
            return;
        }
        Soak s = new Soak(out, launcher, javaOpts.strip(), a.getOrDefault("frontend", "testpmd"),
                Integer.parseInt(a.getOrDefault("pkt-len", "64")));
        double minutes = Double.parseDouble(a.getOrDefault("minutes", "60"));
        s.run((long) (minutes * 60_000), Long.parseLong(a.getOrDefault("reconnect-s", "30")) * 1000,
                Long.parseLong(a.getOrDefault("sample-s", "10")) * 1000,
                (long) (Double.parseDouble(a.getOrDefault("warmup-min", "5")) * 60_000), command);
    }

    /** The network namespace jvhost runs in, with its tap brought up once jvhost created it. */
    static final class Ns implements AutoCloseable {
        final String name;
        final String tap;

        Ns() throws IOException, InterruptedException {
            String hex = Integer.toHexString(ThreadLocalRandom.current().nextInt(1 << 20, 1 << 24));
            name = NS_PREFIX + "-" + System.getProperty("pid.tag", "0") + "-" + hex;
            tap = "jvs" + hex;
            run(10, "ip", "netns", "add", name);
            run(10, "ip", "-n", name, "link", "set", "lo", "up");
        }

        List<String> exec(List<String> cmd) {
            List<String> c = new ArrayList<>(List.of("ip", "netns", "exec", name));
            c.addAll(cmd);
            return c;
        }

        void up(String dev, String cidr) throws IOException, InterruptedException {
            run(10, "ip", "-n", name, "link", "set", dev, "up");
            if (cidr != null) {
                run(10, "ip", "-n", name, "addr", "add", cidr, "dev", dev);
            }
        }

        /** Frames jvhost wrote into the tap (the tap's rx counter), or -1. */
        long tapRx(String dev) {
            try {
                Matcher m = TAP_RX.matcher(run(10, "ip", "-n", name, "-s", "-j", "link", "show", "dev", dev));
                return m.find() ? Long.parseLong(m.group(1)) : -1;
            } catch (IOException e) {
                return -1;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return -1;
            }
        }

        @Override
        public void close() {
            try {
                run(20, "ip", "netns", "del", name);
            } catch (IOException | InterruptedException e) {
                System.err.println("soak: could not delete netns " + name + ": " + e.getMessage());
            }
        }
    }

    /** A jvhost process started through the launcher; its output goes to a log file. */
    static final class JvhostProc implements AutoCloseable {
        final Process process;
        final Path log;

        JvhostProc(Ns ns, Path launcher, String javaOpts, List<String> args, Path log) throws IOException {
            List<String> cmd = new ArrayList<>(List.of(launcher.toAbsolutePath().toString()));
            cmd.addAll(args);
            ProcessBuilder pb = new ProcessBuilder(ns.exec(cmd)).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
            pb.environment().put("JVHOST_JAVA_OPTS", javaOpts);
            Files.writeString(log, "# JVHOST_JAVA_OPTS='" + javaOpts + "' " + String.join(" ", pb.command()) + "\n");
            this.log = log;
            this.process = pb.start();
        }

        /** Lines of the log containing {@code text}. */
        int count(String text) {
            try {
                return (int) Files.readAllLines(log, StandardCharsets.UTF_8).stream().filter(l -> l.contains(text)).count();
            } catch (IOException | RuntimeException e) {
                return 0;
            }
        }

        void awaitCount(String text, int n, long timeoutMs) throws IOException, InterruptedException {
            long end = System.nanoTime() + timeoutMs * 1_000_000;
            while (count(text) < n) {
                if (!process.isAlive()) {
                    throw new IOException("jvhost exited " + process.exitValue() + " (log " + log + ")");
                }
                if (System.nanoTime() > end) {
                    throw new IOException("jvhost did not log \"" + text + "\" " + n + " times within " + timeoutMs
                            + " ms (log " + log + ")");
                }
                Thread.sleep(50);
            }
        }

        /** SIGTERM; the exit code, or -1 when it had to be killed. */
        int stop() throws InterruptedException {
            process.toHandle().destroy();
            if (process.waitFor(20, TimeUnit.SECONDS)) {
                return process.exitValue();
            }
            process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            return -1;
        }

        @Override
        public void close() {
            if (process.isAlive()) {
                try {
                    stop();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    process.destroyForcibly();
                }
            }
        }
    }

    /** One front-end process (one vhost-user session), output in its own log. */
    static final class FrontEnd {
        final String kind;
        final Process process;
        final Path log;

        FrontEnd(String kind, Ns ns, Path socket, int pktLen, Path log) throws IOException {
            this.kind = kind;
            this.log = log;
            List<String> cmd;
            if (kind.equals("testpmd")) {
                Path tool = Path.of(System.getProperty("soak.root", ".")).resolve("tools/testpmd").toAbsolutePath();
                cmd = List.of(tool.toString(), "virtio-user", "--socket", socket.toString(), "--mode", "txonly",
                        "--pkt-len", Integer.toString(pktLen), "--stats-period", "60");
            } else {
                cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                        "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-cp",
                        System.getProperty("java.class.path"), DriverFront.class.getName(), "--socket-path=" + socket,
                        "--mode=tx", "--size=" + pktLen, "--ring=256");
            }
            ProcessBuilder pb = new ProcessBuilder(ns.exec(cmd)).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.to(log.toFile()))
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
            this.process = pb.start();
        }

        /** Whether it has started forwarding frames (its log says so). */
        boolean forwarding() {
            try {
                String marker = kind.equals("testpmd") ? "TESTPMD-STARTED" : "driver front-end: attached";
                return Files.readString(log).contains(marker);
            } catch (IOException e) {
                return false;
            }
        }

        /** SIGTERM (both print their totals on it); frames the front-end says it sent, or -1. */
        long stop() throws InterruptedException, IOException {
            // toHandle().destroy() only signals; the output goes to a file, so no pipe is closed under it.
            process.toHandle().destroy();
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                return -1;
            }
            Matcher m = (kind.equals("testpmd") ? TESTPMD_TX : DRIVER_TX).matcher(Files.readString(log));
            long n = -1;
            while (m.find()) {
                n = Long.parseLong(m.group(1));
            }
            return n;
        }
    }

    static String run(long timeoutSec, String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(timeoutSec, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("timed out: " + String.join(" ", cmd));
        }
        String s = new String(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            throw new IOException("exit " + p.exitValue() + ": " + String.join(" ", cmd) + ": " + s.strip());
        }
        return s;
    }

    static String machine() {
        StringBuilder sb = new StringBuilder();
        try {
            sb.append(Files.readString(Path.of("/proc/loadavg")).strip());
        } catch (IOException e) {
            sb.append('?');
        }
        return sb.toString();
    }

    static String now() {
        return Instant.now().toString();
    }

    private static String req(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null) {
            throw new IllegalArgumentException("--" + k + "= is required");
        }
        return v;
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String s : argv) {
            if (!s.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + s);
            }
            int eq = s.indexOf('=');
            m.put(eq < 0 ? s.substring(2) : s.substring(2, eq), eq < 0 ? "" : s.substring(eq + 1));
        }
        return m;
    }
}
