package io.jvhost.bench.e2e;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToLongFunction;
import org.HdrHistogram.Histogram;

/**
 * Measures one contender in one scenario once: a fresh namespace, the contender started, the tap
 * configured, traffic awaited (bounded), a warm-up, then one window read from the tap's counters
 * and the back-end's /proc stat. Everything started is stopped and the namespace deleted before
 * returning, whatever happened.
 */
final class Measure {
    /** Upper bound for a contender to start moving frames (testpmd's EAL init is slow on a loaded machine). */
    static final long START_TIMEOUT_MS = 60_000;

    private final Path binDir;
    private final Path outDir;
    private final double warmupSec;
    private final double windowSec;
    private final String backendCpus;
    private final String frontendCpus;
    /** The run in progress, for the shutdown hook. */
    private volatile AutoCloseable[] current;

    Measure(Path binDir, Path outDir, double warmupSec, double windowSec, String backendCpus, String frontendCpus) {
        this.binDir = binDir;
        this.outDir = outDir;
        this.warmupSec = warmupSec;
        this.windowSec = windowSec;
        this.backendCpus = backendCpus;
        this.frontendCpus = frontendCpus;
        Runtime.getRuntime().addShutdownHook(new Thread(this::abort, "e2e-cleanup"));
    }

    private void abort() {
        AutoCloseable[] c = current;
        if (c != null) {
            for (AutoCloseable a : c) {
                try {
                    a.close();
                } catch (Exception ignored) {
                    // best effort on the way out; run-e2e's trap removes what is left
                }
            }
        }
    }

    Sample once(Scenario s, Contender c, int repeat) {
        String tag = s.id + "-" + c.name() + "-r" + repeat;
        Path dir = outDir.resolve("runs").resolve(tag);
        NetNs ns = null;
        Procs procs = null;
        try {
            Files.createDirectories(dir);
            ns = NetNs.create(System.getProperty("pid.tag", Long.toString(ProcessHandle.current().pid())));
            procs = new Procs(dir);
            current = new AutoCloseable[] {procs, ns};
            Run run = new Run(s, ns, procs, binDir, dir, ns.tap, backendCpus, frontendCpus, c.rings());
            Process backend = c.start(run);
            ns.configureTap(START_TIMEOUT_MS, backend);
            return switch (s.kind) {
                case TX, TX_GSO, TX_USO, TX_DGRAM -> throughput(run, c, repeat, backend, NetNs.Counters::rxPackets, NetNs.Counters::rxBytes);
                case RX -> {
                    procs.start("generator", ns.exec(frontendCpus, List.of(binDir.resolve("pkt_gen").toString(),
                            "--dev=" + ns.tap, "--mode=packet", "--size=" + s.frameSize,
                            "--dst-ip=" + NetNs.GUEST_IP, "--dst-mac=" + NetNs.GUEST_MAC)));
                    yield throughput(run, c, repeat, backend, NetNs.Counters::txPackets, NetNs.Counters::txBytes);
                }
                case RR -> roundTrip(run, c, repeat, backend);
            };
        } catch (Exception e) {
            String msg = e.getClass().getSimpleName() + ": " + e.getMessage();
            System.err.println("e2e: " + tag + " failed: " + msg);
            return Sample.failed(s, c.name(), repeat, msg);
        } finally {
            if (procs != null) {
                procs.close();
            }
            if (ns != null) {
                ns.close();
            }
            current = null;
            deleteDpdkRuntimeDirs(ns);
        }
    }

    private static void deleteDpdkRuntimeDirs(NetNs ns) {
        if (ns == null) {
            return;
        }
        try (var dirs = Files.list(Path.of("/var/run/dpdk"))) {
            for (Path d : dirs.filter(p -> p.getFileName().toString().startsWith(NetNs.PREFIX + "-" + ns.tap)).toList()) {
                try (var walk = Files.walk(d)) {
                    for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                        Files.deleteIfExists(p);
                    }
                }
            }
        } catch (IOException ignored) {
            // no DPDK runtime dir: nothing to clean
        }
    }

    /**
     * Waits until 1000 frames went through the tap and, for RX behind a vhost back-end, until the
     * guest has received 1000 frames too. The second condition matters: DPDK's back-end reads
     * (and counts at the tap) every frame from the moment it starts and drops it while no
     * front-end is attached, so on a loaded machine — a JVM or EAL start-up and the vhost-user
     * handshake competing with the generator for CPU 1 and with the spinning back-end for CPU 0 —
     * the window used to open, and sometimes close, before the guest got its first frame (seen as
     * "TX-dropped = RX-packets" in testpmd). jvhost reads the tap only into posted guest buffers,
     * so for it both conditions hold at the same time.
     */
    private void waitForTraffic(Run run, ToLongFunction<NetNs.Counters> packets, Process backend)
            throws IOException, InterruptedException {
        long end = System.nanoTime() + START_TIMEOUT_MS * 1_000_000;
        long first = packets.applyAsLong(run.ns().counters());
        boolean rx = run.scenario().kind == Scenario.Kind.RX;
        while (packets.applyAsLong(run.ns().counters()) - first < 1000 || (rx && guestSoFar(run) >= 0 && guestSoFar(run) < 1000)) {
            if (!backend.isAlive()) {
                throw new IOException("back-end exited (" + backend.exitValue() + ") before moving frames");
            }
            if (System.nanoTime() > end) {
                throw new IOException("no frames through the tap" + (rx ? " and to the guest" : "") + " within "
                        + START_TIMEOUT_MS / 1000 + " s");
            }
            Thread.sleep(100);
        }
    }

    private Sample throughput(Run run, Contender c, int repeat, Process backend,
                              ToLongFunction<NetNs.Counters> packets, ToLongFunction<NetNs.Counters> bytes)
            throws IOException, InterruptedException {
        waitForTraffic(run, packets, backend);
        Thread.sleep((long) (warmupSec * 1000));
        NetNs.Counters c0 = run.ns().counters();
        long g0 = guestFrames(run);
        double cpu0 = Procs.cpuSeconds(backend.pid());
        Thread.sleep((long) (windowSec * 1000));
        NetNs.Counters c1 = run.ns().counters();
        long g1 = guestFrames(run);
        double cpu1 = Procs.cpuSeconds(backend.pid());
        if (!backend.isAlive()) {
            throw new IOException("back-end exited during the window (" + backend.exitValue() + ")");
        }
        double dt = (c1.nanoTime() - c0.nanoTime()) / 1e9;
        long dp = packets.applyAsLong(c1) - packets.applyAsLong(c0);
        long db = bytes.applyAsLong(c1) - bytes.applyAsLong(c0);
        double offered = run.scenario().kind == Scenario.Kind.RX
                ? (c1.txPackets() + c1.txDropped() - c0.txPackets() - c0.txDropped()) / dt : Double.NaN;
        double cpu = cpu1 - cpu0;
        boolean rx = run.scenario().kind == Scenario.Kind.RX;
        double tapRead = rx ? dp / dt : Double.NaN;
        if (rx && g0 >= 0 && g1 >= 0 && dp > 0) {
            // What reached the guest, with the tap's bytes per frame (the same frames, minus drops).
            long gp = g1 - g0;
            db = (long) ((double) db * gp / dp);
            dp = gp;
        }
        return new Sample(run.scenario(), c.name(), repeat, dp / dt, db * 8 / dt / 1e9, cpu / (dp / 1e6),
                100 * cpu / dt, offered, tapRead, 0, null, null);
    }

    /**
     * Frames the front-end has received so far, from its count file ({@link DriverFront}
     * {@code --count-file}, {@link #GUEST_COUNT_FILE} in the run directory: one native-order long
     * the front-end stores after every frame), or -1 when this run's front-end keeps none.
     */
    static long guestFrames(Run run) throws IOException {
        Path f = run.dir().resolve(GUEST_COUNT_FILE);
        if (!Files.exists(f)) {
            return -1;
        }
        byte[] b = Files.readAllBytes(f);
        return b.length < 8 ? -1 : java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.nativeOrder()).getLong(0);
    }

    /** testpmd's periodic port statistics: "  RX-packets: 123   RX-missed: ..." (port 0 is the only port of a front-end). */
    private static final java.util.regex.Pattern TESTPMD_RX = java.util.regex.Pattern.compile("RX-packets:\\s+(\\d+)");

    /**
     * Frames the front-end has received so far: the Java driver's count file, else the last
     * periodic "RX-packets:" of testpmd's statistics in the front-end's log (0 before the first);
     * -1 when the run has no front-end (c-limit).
     */
    static long guestSoFar(Run run) throws IOException {
        long g = guestFrames(run);
        if (g >= 0) {
            return g;
        }
        Path log = run.procs().log("frontend");
        if (!Files.exists(log)) {
            return -1;
        }
        java.util.regex.Matcher m = TESTPMD_RX.matcher(Files.readString(log, java.nio.charset.StandardCharsets.ISO_8859_1));
        long last = 0;
        while (m.find()) {
            last = Long.parseLong(m.group(1));
        }
        return last;
    }

    /** Name of the front-end's received-frames file in a run directory. */
    static final String GUEST_COUNT_FILE = "frontend-rx-count";

    private Sample roundTrip(Run run, Contender c, int repeat, Process backend) throws Exception {
        Path rtt = run.dir().resolve("rtt.txt");
        List<String> ping = new ArrayList<>(List.of(binDir.resolve("rtt_ping").toString(),
                "--dst-ip=" + NetNs.GUEST_IP, "--size=" + run.scenario().frameSize, "--out=" + rtt));
        // Until the front-end answers (its link comes up after the vhost-user handshake).
        long end = System.nanoTime() + START_TIMEOUT_MS * 1_000_000;
        int attempt = 0;
        while (true) {
            List<String> probe = new ArrayList<>(ping);
            probe.add("--seconds=" + warmupSec);
            Process p = run.procs().start("ping-warmup-" + attempt, run.ns().exec(frontendCpus, probe));
            p.waitFor();
            String r = Procs.resultLine(run.procs().log("ping-warmup-" + attempt));
            if (Procs.resultValue(r, "received") > 0) {
                break;
            }
            if (!backend.isAlive() || System.nanoTime() > end) {
                throw new IOException("no echo reply within " + START_TIMEOUT_MS / 1000 + " s" + (backend.isAlive()
                        ? "" : " (back-end exited " + backend.exitValue() + ")"));
            }
            attempt++;
        }
        ping.add("--seconds=" + windowSec);
        double cpu0 = Procs.cpuSeconds(backend.pid());
        long t0 = System.nanoTime();
        Process p = run.procs().start("ping", run.ns().exec(frontendCpus, ping));
        if (!p.waitFor((long) (windowSec * 1000) + 30_000, java.util.concurrent.TimeUnit.MILLISECONDS)) {
            throw new IOException("rtt_ping did not finish");
        }
        double dt = (System.nanoTime() - t0) / 1e9;
        double cpu = Procs.cpuSeconds(backend.pid()) - cpu0;
        String r = Procs.resultLine(run.procs().log("ping"));
        Histogram h = new Histogram(3);
        try (var lines = Files.lines(rtt)) {
            lines.forEach(l -> h.recordValue(Long.parseLong(l.strip())));
        }
        long n = h.getTotalCount();
        if (n == 0) {
            throw new IOException("no round trips measured: " + r);
        }
        return new Sample(run.scenario(), c.name(), repeat, n / dt, n * run.scenario().frameSize * 2 * 8 / dt / 1e9,
                cpu / (n / 1e6), 100 * cpu / dt, Double.NaN, Double.NaN, (long) Procs.resultValue(r, "lost"), h, null);
    }
}
