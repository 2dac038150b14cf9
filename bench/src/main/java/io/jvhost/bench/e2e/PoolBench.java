package io.jvhost.bench.e2e;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.virtio.VirtioFeatures;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The worker-pool benchmark (issue 15): jvhost (tools/jvhost, a separate process pinned to the
 * back-end CPUs) serving several devices; traffic front-ends on the front-end CPUs — testpmd
 * virtio-user (default when dpdk-testpmd is installed: a spinning front-end, as bench/run-e2e uses
 * for 64 B) or the Java driver ({@link DriverFront}) — and in-process {@link GuestNic}s for idle
 * devices; frames counted at the taps. Scenarios, each one jvhost run with its variants alternating inside it (the order flips
 * every repeat, so drift on a shared machine hits both):
 * <ul>
 *   <li>{@code beside-idle}: TX 64 B of one device on a single worker ({@code --workers=1}), alone
 *       vs. with {@code --idle} idle devices attached to the same worker; ratio beside / alone.</li>
 *   <li>{@code two-busy}: two devices sending TX 64 B on one worker; each one's share (min / max).</li>
 *   <li>{@code scale-tx}, {@code scale-rx}: one device with 2 queue pairs on 2 workers pinned to the
 *       back-end CPUs when there are two of them, else to the back-end and front-end CPUs
 *       ({@code --queues=2 --workers=2 --cpus=...}); the front-end uses 1 queue pair,
 *       then 2 (TX 64 B; RX 64 B from pkt_gen with 64 flows so the tap spreads them over its
 *       queues); aggregate frames per second, 2 / 1.</li>
 * </ul>
 * <pre>
 * PoolBench --bin=DIR --out=DIR [--jvhost=tools/jvhost] [--scenarios=beside-idle,two-busy,scale-tx,scale-rx]
 *           [--repeats=3] [--seconds=5] [--warmup=3] [--idle=63] [--backend-cpus=0] [--frontend-cpus=1]
 *           [--frontend=auto|testpmd|java-driver] [--busy-poll-us=N]
 * </pre>
 * {@code --busy-poll-us} is passed to jvhost: with it (e.g. 1000000) a worker keeps polling while
 * traffic flows, as a DPDK PMD does, so a busy device makes its worker CPU-bound; without it a
 * worker sleeps whenever its rings are empty and a lone device is bound by wake-ups rather than
 * by the worker's CPU.
 * Writes {@code OUT/pool.md} (tables) and prints it. Started by {@code bench/run-pool}. Single-threaded;
 * every process and namespace it starts is stopped / deleted after each scenario.
 */
public final class PoolBench {
    private static final Pattern RX = Pattern.compile("\"rx\":\\{\"bytes\":(\\d+),\"packets\":(\\d+)");
    private static final Pattern TX = Pattern.compile(
            "\"tx\":\\{\"bytes\":(\\d+),\"packets\":(\\d+),\"errors\":\\d+,\"dropped\":(\\d+)");
    private static final long IDLE_FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);

    private final Path bin;
    private final Path out;
    private final String launcher;
    private final int repeats;
    private final double seconds;
    private final double warmup;
    private final int idle;
    private final String beCpus;
    private final String feCpus;
    private final boolean testpmd;
    private final String busyPoll;
    private final StringBuilder report = new StringBuilder();

    private PoolBench(Map<String, String> a) {
        bin = Path.of(req(a, "bin"));
        out = Path.of(req(a, "out"));
        launcher = a.getOrDefault("jvhost", "tools/jvhost");
        repeats = Integer.parseInt(a.getOrDefault("repeats", "3"));
        seconds = Double.parseDouble(a.getOrDefault("seconds", "5"));
        warmup = Double.parseDouble(a.getOrDefault("warmup", "3"));
        idle = Integer.parseInt(a.getOrDefault("idle", "63"));
        beCpus = a.getOrDefault("backend-cpus", "0");
        feCpus = a.getOrDefault("frontend-cpus", "1");
        busyPoll = a.getOrDefault("busy-poll-us", "0");
        testpmd = switch (a.getOrDefault("frontend", "auto")) {
            case "auto" -> onPath(Dpdk.TESTPMD);
            case "testpmd" -> true;
            case "java-driver" -> false;
            default -> throw new IllegalArgumentException("--frontend: auto, testpmd or java-driver");
        };
    }

    private static boolean onPath(String exe) {
        for (String d : System.getenv().getOrDefault("PATH", "").split(":")) {
            if (Files.isExecutable(Path.of(d, exe))) {
                return true;
            }
        }
        return false;
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = new LinkedHashMap<>();
        for (String s : argv) {
            if (!s.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + s);
            }
            int eq = s.indexOf('=');
            a.put(eq < 0 ? s.substring(2) : s.substring(2, eq), eq < 0 ? "" : s.substring(eq + 1));
        }
        PoolBench b = new PoolBench(a);
        Files.createDirectories(b.out);
        b.report.append(String.format(Locale.ROOT, "PoolBench: %d repeat(s) x %.0f s windows (%.0f s warm-up), back-end"
                        + " CPUs %s, front-end CPUs %s, front-end %s, jvhost --busy-poll-us=%s, load average at start %s%n%n",
                b.repeats, b.seconds, b.warmup, b.beCpus, b.feCpus, b.testpmd ? "testpmd virtio-user" : "Java driver",
                b.busyPoll,
                Files.readString(Path.of("/proc/loadavg")).strip()));
        for (String s : a.getOrDefault("scenarios", "beside-idle,two-busy,scale-tx,scale-rx").split(",")) {
            switch (s.strip()) {
                case "beside-idle" -> b.besideIdle();
                case "two-busy" -> b.twoBusy();
                case "scale-tx" -> b.scale(false);
                case "scale-rx" -> b.scale(true);
                default -> throw new IllegalArgumentException("unknown scenario " + s
                        + " (beside-idle, two-busy, scale-tx, scale-rx)");
            }
        }
        Files.writeString(b.out.resolve("pool.md"), b.report);
        System.out.print(b.report);
    }

    // ------------------------------------------------------------------ scenarios

    private void besideIdle() throws Exception {
        int devices = 1 + idle;
        try (Bed bed = new Bed("idle", devices)) {
            bed.startJvhost(beCpus, "--workers=1", "--cpus=" + first(beCpus));
            Process front = bed.driverFront(0, "tx", 1);
            bed.awaitFrames(0, true, front);
            sleep(warmup);
            List<Front> idleFronts = new ArrayList<>();
            List<double[]> rows = new ArrayList<>();
            try {
                for (int r = 0; r < repeats; r++) {
                    double alone = 0;
                    double beside = 0;
                    for (int v = 0; v < 2; v++) {
                        boolean besideNow = (v + r) % 2 == 1;
                        if (besideNow && idleFronts.isEmpty()) {
                            for (int i = 1; i < devices; i++) {
                                idleFronts.add(new Front(i, bed.socket(i)));
                            }
                        } else if (!besideNow) {
                            closeAll(idleFronts);
                        }
                        sleep(1);
                        double pps = bed.window(List.of(0), true)[0];
                        if (besideNow) {
                            beside = pps;
                        } else {
                            alone = pps;
                        }
                    }
                    rows.add(new double[] {alone, beside, beside / alone});
                    System.err.printf(Locale.ROOT, "pool: beside-idle repeat %d: alone %.0f, beside %d idle %.0f pps%n",
                            r + 1, alone, idle, beside);
                }
            } finally {
                closeAll(idleFronts);
            }
            report.append(String.format(Locale.ROOT, "### beside-idle: TX 64 B of one device, alone on its worker vs. "
                    + "with %d idle devices attached to the same worker (--workers=1 --cpus=%s)%n%n", idle, first(beCpus)));
            report.append("| repeat | alone (pps) | beside idle (pps) | beside / alone |\n|---|---|---|---|\n");
            for (int r = 0; r < rows.size(); r++) {
                report.append(String.format(Locale.ROOT, "| %d | %.0f | %.0f | %.3f |%n", r + 1, rows.get(r)[0],
                        rows.get(r)[1], rows.get(r)[2]));
            }
            report.append(String.format(Locale.ROOT, "%nmedian beside / alone: **%.3f**; longest stretch without a frame on a measured tap: %d ms%n%n", median(rows, 2),
                    bed.maxStallMs));
        }
    }

    private void twoBusy() throws Exception {
        try (Bed bed = new Bed("two", 2)) {
            bed.startJvhost(beCpus, "--workers=1", "--cpus=" + first(beCpus));
            Process a = bed.driverFront(0, "tx", 1);
            Process b = bed.driverFront(1, "tx", 1);
            bed.awaitFrames(0, true, a);
            bed.awaitFrames(1, true, b);
            sleep(warmup);
            report.append(String.format(Locale.ROOT, "### two-busy: two devices sending TX 64 B on one worker"
                    + " (--workers=1 --cpus=%s)%n%n| repeat | device 0 (pps) | device 1 (pps) | min / max |%n|---|---|---|---|%n",
                    first(beCpus)));
            List<double[]> rows = new ArrayList<>();
            for (int r = 0; r < repeats; r++) {
                double[] pps = bed.window(List.of(0, 1), true);
                double share = Math.min(pps[0], pps[1]) / Math.max(pps[0], pps[1]);
                rows.add(new double[] {pps[0], pps[1], share});
                report.append(String.format(Locale.ROOT, "| %d | %.0f | %.0f | %.3f |%n", r + 1, pps[0], pps[1], share));
                System.err.printf(Locale.ROOT, "pool: two-busy repeat %d: %.0f / %.0f pps%n", r + 1, pps[0], pps[1]);
            }
            report.append(String.format(Locale.ROOT, "%nmedian min / max: **%.3f**; longest stretch without a frame on a measured tap: %d ms%n%n", median(rows, 2),
                    bed.maxStallMs));
        }
    }

    private void scale(boolean rx) throws Exception {
        // Two workers need two CPUs: the back-end's when it has two (a machine with CPUs to spare),
        // else the back-end's and the front-end's (2 cores: the second worker shares the front-end's CPU).
        String cpus = io.jvhost.config.CpuList.parse(beCpus).length >= 2 || beCpus.equals(feCpus) ? beCpus
                : beCpus + "," + feCpus;
        try (Bed bed = new Bed(rx ? "srx" : "stx", 1)) {
            bed.startJvhost(cpus, "--queues=2", "--workers=2", "--cpus=" + cpus);
            List<double[]> rows = new ArrayList<>();
            for (int r = 0; r < repeats; r++) {
                double[] pps = new double[3];
                double[] cpu = new double[3];
                for (int v = 0; v < 2; v++) {
                    int queues = (v + r) % 2 == 0 ? 1 : 2;
                    Process front = bed.driverFront(0, rx ? "rx" : "tx", queues);
                    Process gen = null;
                    try {
                        if (rx) {
                            gen = bed.procs.start("pkt_gen-" + r + "-" + queues, bed.inNs(feCpus, List.of(
                                    bin.resolve("pkt_gen").toString(), "--dev=" + bed.tap(0), "--mode=packet",
                                    "--size=64", "--flows=64", "--dst-ip=" + NetNs.GUEST_IP,
                                    "--dst-mac=" + NetNs.GUEST_MAC)));
                        }
                        bed.awaitFrames(0, !rx, front);
                        sleep(Math.max(1, warmup / 2));
                        double c0 = Procs.cpuSeconds(bed.jvhost.pid());
                        pps[queues] = bed.window(List.of(0), !rx)[0];
                        cpu[queues] = (Procs.cpuSeconds(bed.jvhost.pid()) - c0) / seconds;
                    } finally {
                        if (gen != null) {
                            Procs.stop(gen, 5000);
                        }
                        Procs.stop(front, 5000);
                    }
                    sleep(1); // the front-end's session ends, its pairs leave their workers
                }
                rows.add(new double[] {pps[1], pps[2], pps[2] / pps[1], cpu[1], cpu[2]});
                System.err.printf(Locale.ROOT, "pool: scale-%s repeat %d: 1 qp %.0f, 2 qp %.0f pps%n", rx ? "rx" : "tx",
                        r + 1, pps[1], pps[2]);
            }
            report.append(String.format(Locale.ROOT, "### scale-%s: %s 64 B, one device with 2 queue pairs on 2 workers "
                    + "(--queues=2 --workers=2 --cpus=%s), the front-end using 1 vs. 2 queue pairs%n%n", rx ? "rx" : "tx",
                    rx ? "RX (pkt_gen, 64 flows)" : "TX", cpus));
            report.append("| repeat | 1 qp (pps) | 2 qp (pps) | 2 / 1 | jvhost CPUs busy, 1 qp | 2 qp |\n"
                    + "|---|---|---|---|---|---|\n");
            for (int r = 0; r < rows.size(); r++) {
                double[] x = rows.get(r);
                report.append(String.format(Locale.ROOT, "| %d | %.0f | %.0f | %.3f | %.2f | %.2f |%n", r + 1, x[0], x[1],
                        x[2], x[3], x[4]));
            }
            report.append(String.format(Locale.ROOT, "%nmedian 2 qp / 1 qp: **%.3f**; longest stretch without a frame on a measured tap: %d ms%n%n", median(rows, 2),
                    bed.maxStallMs));
        }
    }

    // ------------------------------------------------------------------ test bed

    /** One jvhost process with {@code devices} devices, their taps in a namespace, and child processes. */
    private final class Bed implements AutoCloseable {
        final String hex = Integer.toHexString(ThreadLocalRandom.current().nextInt(1 << 16, 1 << 20));
        final String ns;
        final Path dir;
        final Procs procs;
        final int devices;
        final List<String> dpdkPrefixes = new ArrayList<>();
        Process jvhost;
        /** Longest stretch without a frame seen in any window so far. */
        long maxStallMs;

        Bed(String what, int devices) throws IOException, InterruptedException {
            this.devices = devices;
            this.ns = NetNs.PREFIX + "-" + System.getProperty("pid.tag", Long.toString(ProcessHandle.current().pid()))
                    + "-" + what + hex;
            this.dir = Files.createDirectories(out.resolve(what + "-" + hex));
            this.procs = new Procs(dir);
            Procs.run(10, "ip", "netns", "add", ns);
            Procs.run(10, "ip", "-n", ns, "link", "set", "lo", "up");
        }

        String tap(int i) {
            return "jvp" + hex + (devices > 1 ? Integer.toString(i) : "");
        }

        String socket(int i) {
            return dir.resolve("vm" + i + ".sock").toString();
        }

        List<String> inNs(String cpus, List<String> cmd) {
            List<String> c = new ArrayList<>(List.of("taskset", "-c", cpus, "ip", "netns", "exec", ns));
            c.addAll(cmd);
            return c;
        }

        void startJvhost(String cpus, String... options) throws Exception {
            List<String> cmd = new ArrayList<>(List.of(launcher));
            cmd.addAll(Arrays.asList(options));
            cmd.add("--busy-poll-us=" + busyPoll);
            for (int i = 0; i < devices; i++) {
                cmd.add("--socket-path=" + socket(i));
                cmd.add("--tap=" + tap(i));
            }
            jvhost = procs.start("jvhost", inNs(cpus, cmd));
            long end = System.nanoTime() + Measure.START_TIMEOUT_MS * 1_000_000;
            for (int i = 0; i < devices; i++) {
                while (!Files.exists(Path.of(socket(i)))) {
                    if (!jvhost.isAlive() || System.nanoTime() > end) {
                        throw new IOException("jvhost did not listen on " + socket(i) + (jvhost.isAlive() ? ""
                                : " (exited " + jvhost.exitValue() + ")"));
                    }
                    Thread.sleep(50);
                }
                Procs.run(10, "ip", "-n", ns, "link", "set", tap(i), "up");
            }
        }

        /** The traffic front-end of {@code device}: TX ({@code tx}) or RX ({@code rx}) on {@code queues} queue pairs. */
        Process driverFront(int device, String mode, int queues) throws IOException {
            if (testpmd) {
                String prefix = NetNs.PREFIX + "-" + hex + "-fe" + device + "-" + System.nanoTime() % 100000;
                dpdkPrefixes.add(prefix);
                List<String> cmd = Dpdk.eal(first(feCpus), prefix);
                cmd.addAll(List.of("--vdev", "net_virtio_user0,path=" + socket(device) + ",queues=" + queues
                        + ",queue_size=" + Dpdk.QUEUE_SIZE + ",mac=" + NetNs.GUEST_MAC));
                cmd.addAll(Dpdk.app(mode.equals("tx") ? "txonly" : "rxonly"));
                if (mode.equals("tx")) {
                    cmd.add("--txpkts=64");
                }
                if (queues > 1) {
                    cmd.addAll(List.of("--rxq=" + queues, "--txq=" + queues));
                }
                return procs.start("front-" + device + "-" + mode + queues + "-" + System.nanoTime() % 100000,
                        inNs(first(feCpus), cmd));
            }
            return procs.start("front-" + device + "-" + mode + queues + "-" + System.nanoTime() % 100000, List.of(
                    "taskset", "-c", feCpus, Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-cp", System.getProperty("java.class.path"),
                    DriverFront.class.getName(), "--socket-path=" + socket(device), "--mode=" + mode, "--size=64",
                    "--ring=" + Dpdk.QUEUE_SIZE, "--queues=" + queues));
        }

        /** Until 1000 frames went through tap {@code i} (written by jvhost when {@code tx}, else read by it). */
        void awaitFrames(int i, boolean tx, Process front) throws Exception {
            long first = packets(i, tx);
            long end = System.nanoTime() + Measure.START_TIMEOUT_MS * 1_000_000;
            while (packets(i, tx) - first < 1000) {
                if (!front.isAlive() || !jvhost.isAlive() || System.nanoTime() > end) {
                    throw new IOException("no frames through " + tap(i) + " (front-end " + (front.isAlive() ? "alive"
                            : "exited") + ", jvhost " + (jvhost.isAlive() ? "alive" : "exited") + "); logs in " + dir);
                }
                Thread.sleep(100);
            }
        }

        long packets(int i, boolean tx) throws IOException, InterruptedException {
            String j = Procs.run(10, "ip", "-n", ns, "-s", "-j", "link", "show", "dev", tap(i));
            Matcher m = (tx ? RX : TX).matcher(j);
            if (!m.find()) {
                throw new IOException("cannot parse tap counters: " + j);
            }
            return Long.parseLong(m.group(2));
        }

        /** Frames per second through each of {@code taps} over one window. */
        double[] window(List<Integer> taps, boolean tx) throws Exception {
            long[] p0 = new long[taps.size()];
            for (int k = 0; k < taps.size(); k++) {
                p0[k] = packets(taps.get(k), tx);
            }
            long t0 = System.nanoTime();
            // Sampled every 200 ms meanwhile: the longest stretch in which a tap saw no frame.
            long[] last = p0.clone();
            long[] since = new long[taps.size()];
            Arrays.fill(since, t0);
            long stall = 0;
            long end = t0 + (long) (seconds * 1e9);
            while (System.nanoTime() < end) {
                Thread.sleep(Math.max(1, Math.min(200, (end - System.nanoTime()) / 1_000_000)));
                long now = System.nanoTime();
                for (int k = 0; k < taps.size(); k++) {
                    long p = packets(taps.get(k), tx);
                    if (p != last[k]) {
                        last[k] = p;
                        since[k] = now;
                    }
                    stall = Math.max(stall, now - since[k]);
                }
            }
            double[] pps = new double[taps.size()];
            double dt = (System.nanoTime() - t0) / 1e9;
            for (int k = 0; k < taps.size(); k++) {
                pps[k] = (last[k] - p0[k]) / dt;
            }
            maxStallMs = Math.max(maxStallMs, stall / 1_000_000);
            if (stall > 1_000_000_000L) {
                System.err.printf(Locale.ROOT, "pool: a tap saw no frame for %d ms in this window%n", stall / 1_000_000);
            }
            if (!jvhost.isAlive()) {
                throw new IOException("jvhost exited during the window; logs in " + dir);
            }
            return pps;
        }

        @Override
        public void close() {
            procs.close();
            for (String p : dpdkPrefixes) {
                deleteTree(Path.of("/var/run/dpdk", p));
            }
            try {
                Procs.run(20, "ip", "netns", "del", ns);
            } catch (IOException | InterruptedException e) {
                System.err.println("pool: could not delete netns " + ns + ": " + e.getMessage());
            }
        }
    }

    /** An idle front-end in this JVM: attached (its queue pair on a worker), posting RX buffers, sending nothing. */
    private static final class Front implements AutoCloseable {
        final DriverMemory mem;
        final GuestNic nic;
        final VhostUserClient client;

        Front(int i, String socket) {
            mem = DriverMemory.memfd("pool-idle-" + i, GuestNic.ramNeeded(1, 256, 1514, IDLE_FEATURES),
                    DriverMemory.DEFAULT_GPA_BASE);
            nic = new GuestNic(mem, 1, IDLE_FEATURES, 256, 1514);
            client = VhostUserClient.connect(socket);
            nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
        }

        @Override
        public void close() {
            client.close();
            nic.close();
            mem.close();
        }
    }

    // ------------------------------------------------------------------ helpers

    private static void deleteTree(Path p) {
        if (!Files.exists(p)) {
            return;
        }
        try (var walk = Files.walk(p)) {
            for (Path x : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(x);
            }
        } catch (IOException e) {
            System.err.println("pool: could not delete " + p + ": " + e.getMessage());
        }
    }

    private static void closeAll(List<Front> fronts) {
        for (Front f : fronts) {
            f.close();
        }
        fronts.clear();
    }

    private static String first(String cpus) {
        return cpus.split("[,-]")[0];
    }

    private static void sleep(double s) throws InterruptedException {
        Thread.sleep((long) (s * 1000));
    }

    private static double median(List<double[]> rows, int col) {
        double[] v = rows.stream().mapToDouble(r -> r[col]).sorted().toArray();
        return v.length == 0 ? Double.NaN : v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    private static String req(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null) {
            throw new IllegalArgumentException("--" + k + "= is required");
        }
        return v;
    }
}
