package io.jvhost.it;

import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.ServerSocket;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import static io.jvhost.it.QemuGuest.BOOT_TIMEOUT;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * jvhost run the way an operator runs it in production, all checked on one QEMU guest boot:
 * <ol>
 *   <li><b>Socket activation:</b> {@code systemd-socket-activate -l SOCK} owns the socket and starts
 *       the shipped jar when QEMU connects (LISTEN_FDS / LISTEN_PID, no {@code --socket-path});
 *       jvhost sends {@code READY=1} (with its MAINPID) to the test's {@code NOTIFY_SOCKET}.</li>
 *   <li><b>Traffic:</b> the Linux guest (2 queue pairs) pings the host and the host the guest;
 *       MiBs of TCP each way, checked by MD5.</li>
 *   <li><b>Prometheus:</b> the {@code --metrics} endpoint's output passes {@code promtool check
 *       metrics}; a real Prometheus server (started here, on loopback in the test's namespace)
 *       scrapes it, and its HTTP API's answer for the frame counters equals the tap's kernel
 *       counters (jvhost TX = what the tap received, jvhost RX + RX drops = what the tap sent).</li>
 *   <li><b>stats --watch</b> on a terminal ({@code script}): rates refreshed in place.</li>
 *   <li><b>Logs:</b> every line jvhost wrote is the one-line format; {@code --log-level=debug} works.</li>
 *   <li><b>JFR:</b> after SIGTERM (exit 0) the {@code --jfr} file holds the session's events,
 *       including the session end and the rings' stop.</li>
 * </ol>
 * jvhost and Prometheus run inside the test's network namespace (an operator's persistent tap
 * carries the host address there); the vhost-user, stats and notify sockets are file paths.
 */
@Tag("privileged")
@Timeout(900)
class OperationsQemuIT {
    static final Duration STEP = Duration.ofMinutes(3);
    private static final int MIB = 2;
    private static final Pattern LOG_LINE =
            Pattern.compile("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z (ERROR|WARN |INFO |DEBUG|TRACE) \\S+ .+");

    @RegisterExtension
    final Scratch scratch = new Scratch("jvo", "vm.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, JvhostProcess::unavailableReason, QemuGuest::unavailableReason,
                () -> Cmd.onPath("systemd-socket-activate") ? null : "needs systemd-socket-activate (Debian package systemd)",
                () -> Cmd.onPath("prometheus") && Cmd.onPath("promtool") ? null
                        : "needs prometheus and promtool (Debian package prometheus; tools/install-deps)",
                () -> Cmd.onPath("script") ? null : "needs script (util-linux) for a terminal");
    }

    @Test
    void socketActivatedJvhostWithMetricsJfrLogsAndWatch() throws Exception {
        Path dir = scratch.dir();
        Path notify = dir.resolve("notify");
        Path jfr = dir.resolve("jvhost.jfr");
        Path stats = dir.resolve("vm0.stats");
        int metricsPort = freePort();
        int promPort = freePort();
        int notifyFd = UnixSocket.bindDatagram(notify.toString());
        NetNs ns = NetNs.create();
        JvhostProcess jv = null;
        LineProcess prom = null;
        QemuGuest g = null;
        try {
            Cmd.ok("ip", "-n", ns.name(), "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr", "multi_queue");
            ns.address(tap, HOST_IP + "/24");
            jv = JvhostProcess.start("jvhost-activated", ns,
                    List.of("systemd-socket-activate", "-l", socket.toString(), "-E", "NOTIFY_SOCKET=" + notify),
                    List.of("-Djvhost.jfr.slowBatchNanos=1"),
                    "--tap=" + tap, "--queues=2", "--metrics=127.0.0.1:" + metricsPort, "--jfr=" + jfr, "--stats-path=" + stats,
                    "--log-level=debug");
            jv.awaitLog("Listening on " + socket, 0, JvhostProcess.START_TIMEOUT);

            try (NetNs.TcpSink sink = ns.listen(5001)) {
                // QEMU's connection is what starts jvhost (systemd's socket activation).
                g = QemuGuest.builder(socket).name("ops-guest").queues(2).hostMtu(1500)
                        .run("ping", "tcp-send", "serve").param("mib", MIB).param("port", 5001).start();
                jv.awaitLog("serving fd 3", 0, JvhostProcess.START_TIMEOUT);
                jv.awaitLog("front-end connected", 0, JvhostProcess.START_TIMEOUT);
                String ready = receive(notifyFd, Duration.ofSeconds(60));
                assertTrue(ready.contains("READY=1"), ready);
                assertTrue(ready.contains("MAINPID=" + jv.pid()), "MAINPID is the JVM exec'd by the wrapper: " + ready);

                bothWays(ns, sink, g, jv);
            }

            watchOnATerminal(stats);
            String body = ns.exec(Duration.ofSeconds(30), "busybox", "wget", "-q", "-O", "-",
                    "http://127.0.0.1:" + metricsPort + "/metrics").orThrow().output();
            assertTrue(body.contains("jvhost_frames_total{device=\"vm0\",direction=\"tx\",queue=\"0\"}"), body);
            assertTrue(body.contains("jvhost_session_connected{device=\"vm0\"} 1.0"), body);
            assertTrue(body.contains("jvhost_sessions_total{device=\"vm0\"} 1.0"), body);
            assertTrue(body.contains("jvhost_feature_negotiated{device=\"vm0\",feature=\"mrg-rxbuf\"} 1.0"), body);
            assertTrue(body.contains("jvhost_ring_state{device=\"vm0\",direction=\"tx\",queue=\"0\",state=\"enabled\"} 1.0"), body);
            assertTrue(body.contains("jvhost_ring_state{device=\"vm0\",direction=\"rx\",queue=\"1\",state=\"enabled\"} 1.0"), body);
            assertTrue(body.contains("jvhost_feature_negotiated{device=\"vm0\",feature=\"mq\"} 1.0"), body);
            Path scrape = dir.resolve("scrape.txt");
            Files.writeString(scrape, body);
            Cmd.Result lint = Cmd.run(Duration.ofSeconds(30), "sh", "-c", "promtool check metrics < " + scrape);
            assertEquals(0, lint.exitCode(), "promtool check metrics:\n" + lint.output());

            prom = startPrometheus(ns, dir, metricsPort, promPort);
            framesEqualTheTapsCounters(ns, tap, promPort, jv);

            assertEquals(0, jv.terminate(Duration.ofSeconds(20)), "clean exit on SIGTERM\n" + jv.tail(30));
            assertTrue(g.isAlive(), "QEMU outlives its back-end");
            checkLogLines(jv);
            checkRecording(jfr);
        } finally {
            if (prom != null) {
                prom.close();
            }
            if (g != null) {
                g.close();
            }
            if (jv != null) {
                jv.close();
            }
            Fds.closeQuietly(notifyFd);
            Cmd.quiet("ip", "-n", ns.name(), "link", "del", tap);
            ns.close();
        }
    }

    /** Ping and TCP both ways, as JvhostQemuIT does it, with jvhost's log as the failure context. */
    private static void bothWays(NetNs ns, NetNs.TcpSink sink, QemuGuest g, JvhostProcess jv) throws Exception {
        QemuGuest.Marker ping = g.awaitMarker("PING", BOOT_TIMEOUT);
        assertEquals(0, ping.intField("rc"), g.tail(30) + "\n" + jv.tail(30));
        QemuGuest.Marker sent = g.awaitMarker("TX-MD5", STEP);
        NetNs.Received got = sink.await(STEP);
        assertEquals((long) MIB << 20, got.bytes());
        assertEquals(sent.first(), got.md5(), "guest → host stream intact");
        g.awaitMarker("SERVING", STEP);
        Cmd.Result hostPing = ns.ping(GUEST_IP, 3, Duration.ofMillis(200), Duration.ofSeconds(30));
        assertTrue(hostPing.ok() && hostPing.output().contains("3 packets received"), hostPing.output());
        byte[] data = new byte[MIB << 20];
        new Random(14).nextBytes(data);
        ns.send(GUEST_IP, 5001, data, STEP);
        assertEquals(NetNs.md5(data), g.awaitMarker("RX-MD5", STEP).first(), "host → guest stream intact");
    }

    /** {@code jvhost stats --watch} under {@code script} (a pseudo-terminal): three in-place refreshes. */
    private static void watchOnATerminal(Path stats) {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cmd = java + " --enable-native-access=ALL-UNNAMED -jar " + JvhostProcess.JAR + " stats --stats-path=" + stats
                + " --watch --interval=0.5 --count=3";
        Cmd.Result r = Cmd.run(Duration.ofSeconds(60), "script", "-qec", cmd, "/dev/null");
        assertEquals(0, r.exitCode(), r.output());
        String out = r.output();
        assertEquals(3, out.split(Pattern.quote("\033[H\033[2J"), -1).length - 1, "three in-place refreshes:\n" + out);
        assertTrue(out.contains("tx_pkt/s") && out.lines().anyMatch(l -> l.startsWith("vm0 ")), out);
        System.out.println("stats --watch, last refresh:\n" + out.substring(out.lastIndexOf("\033[H\033[2J") + 7));
    }

    private static LineProcess startPrometheus(NetNs ns, Path dir, int metricsPort, int promPort) throws Exception {
        Path config = dir.resolve("prometheus.yml");
        Files.writeString(config, """
                global:
                  scrape_interval: 1s
                  scrape_timeout: 1s
                scrape_configs:
                  - job_name: jvhost
                    static_configs:
                      - targets: ['127.0.0.1:%d']
                """.formatted(metricsPort));
        Files.createDirectories(dir.resolve("tsdb"));
        LineProcess p = LineProcess.start("prometheus", List.of("ip", "netns", "exec", ns.name(), "prometheus",
                "--config.file=" + config, "--storage.tsdb.path=" + dir.resolve("tsdb"),
                "--web.listen-address=127.0.0.1:" + promPort), Cmd.logDir().resolve("prometheus-" + Cmd.randomHex(3) + ".log"));
        try {
            p.awaitLine(l -> l.contains("Server is ready to receive web requests"), 0, Duration.ofSeconds(90),
                    "Prometheus ready");
        } catch (AssertionError | InterruptedException e) {
            p.close();
            throw e;
        }
        return p;
    }

    /**
     * Asks Prometheus (its HTTP API, /api/v1/query) for jvhost's frame counters until a scrape after
     * the last frame shows them equal to the tap's kernel counters.
     */
    private static void framesEqualTheTapsCounters(NetNs ns, String tap, int promPort, JvhostProcess jv) throws Exception {
        String up = query(ns, promPort, "up{job=\"jvhost\"}");
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        String last = "";
        while (System.nanoTime() < deadline) {
            NetNs.LinkStats before = ns.linkStats(tap);
            double tx = value(query(ns, promPort, "sum(jvhost_frames_total{direction=\"tx\"})"));
            double rx = value(query(ns, promPort, "sum(jvhost_frames_total{direction=\"rx\"}) + sum(jvhost_drops_total{direction=\"rx\"})"));
            up = query(ns, promPort, "up{job=\"jvhost\"}");
            NetNs.LinkStats after = ns.linkStats(tap);
            last = String.format("prometheus: jvhost tx=%.0f rx+drops=%.0f; tap rx_packets=%d..%d tx_packets=%d..%d",
                    tx, rx, before.rxPackets(), after.rxPackets(), before.txPackets(), after.txPackets());
            // Frames, not segments: 2 MiB of TCP are a few dozen GSO frames each way, plus pings and ARP.
            if (before.equals(after) && tx == after.rxPackets() && rx == after.txPackets() && tx > 20 && rx > 20) {
                System.out.println(last + "  (equal)");
                assertEquals(1.0, value(up), "Prometheus scrapes jvhost: " + up);
                return;
            }
            Thread.sleep(1000);
        }
        throw new AssertionError("jvhost's frame counters in Prometheus never matched the tap's: " + last
                + "\nup: " + up + "\n" + jv.tail(20));
    }

    private static String query(NetNs ns, int promPort, String promql) {
        String url = "http://127.0.0.1:" + promPort + "/api/v1/query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8);
        return ns.exec(Duration.ofSeconds(30), "busybox", "wget", "-q", "-O", "-", url).orThrow().output();
    }

    /** The value of a one-sample instant vector answer ({@code "value":[ts,"v"]}); NaN when empty. */
    private static double value(String answer) {
        Matcher m = Pattern.compile("\"value\":\\[[0-9.]+,\"([^\"]+)\"\\]").matcher(answer);
        return m.find() ? Double.parseDouble(m.group(1)) : Double.NaN;
    }

    /** Every line up to the exit summary table is one log event in jvhost's format. */
    private static void checkLogLines(JvhostProcess jv) {
        List<String> lines = jv.lines();
        boolean debug = false;
        int checked = 0;
        for (String l : lines) {
            if (l.startsWith("jvhost: stopped")) {
                break; // the counters table printed at exit
            }
            if (l.startsWith("Listening on ") || l.startsWith("Communication attempt on fd") || l.startsWith("Execing ")
                    || l.contains("Received SIG")) {
                continue; // systemd-socket-activate's own messages
            }
            assertTrue(LOG_LINE.matcher(l).matches(), "not a one-line log event: " + l);
            debug |= l.contains(" DEBUG ");
            checked++;
        }
        assertTrue(debug, "--log-level=debug logs DEBUG lines");
        assertTrue(checked > 10, "log lines checked: " + checked);
        System.out.println("log format: " + checked + " lines, e.g.\n  " + lines.stream().filter(l -> l.contains(" INFO "))
                .limit(3).collect(Collectors.joining("\n  ")));
    }

    private static void checkRecording(Path jfr) throws IOException {
        assertTrue(Files.size(jfr) > 0, "recording written at stop");
        Map<String, List<RecordedEvent>> byType = RecordingFile.readAllEvents(jfr).stream()
                .filter(e -> e.getEventType().getName().startsWith("io.jvhost."))
                .collect(Collectors.groupingBy(e -> e.getEventType().getName().substring("io.jvhost.".length())));
        String seen = byType.entrySet().stream().map(e -> e.getKey() + "×" + e.getValue().size()).sorted()
                .collect(Collectors.joining(", "));
        System.out.println("JFR (--jfr): " + seen);
        for (String t : List.of("SessionConnected", "FeaturesNegotiated", "MemoryTableInstalled", "RingStarted",
                "SlowBatch", "SessionDisconnected", "RingStopped")) {
            assertTrue(byType.containsKey(t), "no " + t + " event in the --jfr file; seen: " + seen);
        }
        assertTrue(byType.get("FeaturesNegotiated").stream().anyMatch(e -> e.getString("names").contains("mrg-rxbuf")));
        assertTrue(byType.get("RingStarted").stream().map(e -> e.getString("direction")).collect(Collectors.toSet())
                .containsAll(List.of("rx", "tx")));
    }

    private static String receive(int fd, Duration timeout) {
        if (Poll.poll(fd, Poll.POLLIN, (int) timeout.toMillis()) == 0) {
            throw new AssertionError("no sd_notify message within " + timeout);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096);
            long n = Fds.read(fd, buf, 4096);
            return new String(buf.asSlice(0, Math.max(0, n)).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }
}
