package io.jvhost.bench.e2e;

import io.jvhost.driver.RingOptions;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * End-to-end harness: runs scenarios over contenders, alternating the contenders inside each
 * repeat (a different order every repeat, so drift on this shared machine hits all of them), and
 * writes samples.csv, one .hgrm per round-trip contender, a latency PNG and the end-to-end part of
 * bench/RESULTS.md. Started by {@code bench/run-e2e}, which builds the C tools and cleans up.
 *
 * <pre>
 * E2eMain --bin=DIR --out=DIR [--results=bench/RESULTS.md] [--scenarios=tx64,tx1514,tx64k,tx64k-uso,tx1472-udp,rx64,rx1514,rr64]
 *         [--contenders=c-limit,dpdk,jvhost,jvhost-bp] [--repeats=3] [--seconds=5] [--warmup=3]
 *         [--jvhost=tools/jvhost] [--jvhost-alt=LAUNCHER] [--jvhost-interim=true|false] [--busy-poll-us=N]
 *         [--frontend=auto|testpmd|java-driver] [--rings=split,packed,split-inorder,packed-inorder]
 *         [--backend-cpus=0] [--frontend-cpus=1] [--nice=N] [--command="how it was started"]
 * </pre>
 * jvhost is started with {@code tools/jvhost} once that answers {@code --print-capabilities} as a
 * vhost-user-net back-end; until then (unless {@code --jvhost-interim=false}) with the bench's own
 * launcher {@link JvhostServe}, which wires the same datapath classes. {@code --rings} (default split)
 * runs every vhost contender once per ring option, named {@code NAME+RINGS} unless split (e.g.
 * {@code dpdk+packed}); c-limit has no rings and runs once. Single-threaded; child processes are stopped and namespaces deleted after each run, and by a
 * shutdown hook if the harness is interrupted.
 */
public final class E2eMain {
    /**
     * jvhost-bp's busy-poll (µs). 1 s rather than the 100 µs used before: on this VM a worker that
     * sleeps pays a halted vCPU's wake-up (50–100 µs) on the next frame, and the requester sharing
     * CPU 1 with a spinning testpmd often leaves gaps longer than 100 µs, so with 100 µs the per-repeat
     * p99 went up to 356 µs while DPDK, which never sleeps, stayed at 41–55 µs (bench/RESULTS-perf.md).
     */
    static final int BUSY_POLL_US_DEFAULT = 1_000_000;

    private E2eMain() {
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = parse(argv);
        boolean quick = a.containsKey("quick");
        Path bin = Path.of(req(a, "bin"));
        Path out = Path.of(req(a, "out"));
        Files.createDirectories(out);
        List<Scenario> scenarios = new ArrayList<>();
        for (String s : a.getOrDefault("scenarios", "tx64,tx1514,tx64k,tx64k-uso,tx1472-udp,rx64,rx1514,rr64").split(",")) {
            scenarios.add(Scenario.byId(s.strip()));
        }
        int repeats = Integer.parseInt(a.getOrDefault("repeats", quick ? "2" : "3"));
        double seconds = Double.parseDouble(a.getOrDefault("seconds", quick ? "2" : "5"));
        double warmup = Double.parseDouble(a.getOrDefault("warmup", quick ? "1" : "3"));
        String beCpus = a.getOrDefault("backend-cpus", "0");
        String feCpus = a.getOrDefault("frontend-cpus", "1");
        int busyPoll = Integer.parseInt(a.getOrDefault("busy-poll-us", "0"));
        NetNs.nice = Integer.parseInt(a.getOrDefault("nice", "0"));
        List<RingOptions> rings = RingOptions.parseList(a.getOrDefault("rings", "split"));

        VhostContender.FrontEnd fe = switch (a.getOrDefault("frontend", "auto")) {
            case "auto" -> new VhostContender.AutoFrontEnd(new Dpdk.FrontEnd(), new Jvhost.DriverFrontEnd());
            case "testpmd" -> new Dpdk.FrontEnd();
            case "java-driver" -> new Jvhost.DriverFrontEnd();
            default -> throw new IllegalArgumentException("--frontend: auto, testpmd or java-driver");
        };
        List<Contender> contenders = new ArrayList<>();
        List<String> jvhostCmd = null;
        String jvhostWhy = null;
        for (String name : a.getOrDefault("contenders", "c-limit,dpdk,jvhost,jvhost-bp").split(",")) {
            switch (name.strip()) {
                case "c-limit" -> contenders.add(new CLimitContender());
                case "dpdk" -> {
                    for (RingOptions r : rings) {
                        contenders.add(new VhostContender(new Dpdk.Backend(), fe, r));
                    }
                }
                case "jvhost", "jvhost-bp", "jvhost-alt" -> {
                    // jvhost-bp: the same back-end with busy-poll on (--busy-poll-us, default 1 s: the worker
                    // polls while traffic came within the last second, as DPDK's PMD polls always).
                    // jvhost-alt: jvhost with the JVM options in $E2E_ALT_JAVA_OPTS (A/B of a switch in one run).
                    boolean alt = name.strip().equals("jvhost-alt");
                    int bp = name.strip().equals("jvhost-bp") ? (busyPoll > 0 ? busyPoll : BUSY_POLL_US_DEFAULT) : busyPoll;
                    Path launcher = Path.of(a.getOrDefault("jvhost", "tools/jvhost"));
                    if (jvhostCmd == null) {
                        String why = Jvhost.probe(launcher);
                        jvhostCmd = List.of(launcher.toString());
                        if (why != null && !a.getOrDefault("jvhost-interim", "true").equals("false")) {
                            System.err.println("e2e: jvhost: " + why + "; using the bench launcher JvhostServe");
                            jvhostCmd = Jvhost.interimLauncher();
                        } else {
                            jvhostWhy = why;
                            if (why != null) {
                                System.err.println("e2e: jvhost: " + why);
                            }
                        }
                    }
                    List<String> cmd = jvhostCmd;
                    if (alt && a.containsKey("jvhost-alt")) {
                        // another build (e.g. the commit before a change) as jvhost-alt: A/B across code
                        cmd = List.of(Path.of(a.get("jvhost-alt")).toString());
                    }
                    for (RingOptions r : rings) {
                        contenders.add(new VhostContender(new Jvhost.Backend(cmd, bp, jvhostWhy,
                                alt ? System.getenv().getOrDefault("E2E_ALT_JAVA_OPTS", "") : null), fe, r));
                    }
                }
                default -> throw new IllegalArgumentException("unknown contender " + name + " (c-limit, dpdk, jvhost, jvhost-bp, jvhost-alt)");
            }
        }

        Report report = new Report(out, scenarios, contenders, repeats, seconds, warmup, beCpus, feCpus,
                a.getOrDefault("command", "bench/run-e2e"), a.getOrDefault("git", "?"));
        Measure m = new Measure(bin, out, warmup, seconds, beCpus, feCpus);
        for (Scenario s : scenarios) {
            for (int r = 0; r < repeats; r++) {
                for (int i = 0; i < contenders.size(); i++) {
                    Contender c = contenders.get((i + r) % contenders.size());
                    String why = c.unsupported(s);
                    if (why != null) {
                        report.unsupported(s, c.name(), why);
                        continue;
                    }
                    System.err.printf("e2e: %s %s repeat %d/%d%n", s.id, c.name(), r + 1, repeats);
                    Sample sample = m.once(s, c, r + 1);
                    String found = sample.ok() ? null : c.unsupported(s);
                    if (found != null) {
                        // the start found that the back-end lacks the rings asked for: not a measurement
                        report.unsupported(s, c.name(), found);
                        System.err.println("e2e:   " + found);
                        continue;
                    }
                    report.add(sample);
                    System.err.println("e2e:   " + Report.oneLine(sample));
                }
            }
        }
        report.finish();
        if (a.containsKey("results")) {
            report.writeResultsMd(Path.of(a.get("results")), a.get("published"));
        }
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
