package io.jvhost.cli;

import io.jvhost.virtio.VirtioFeatures;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.jvhost.driver.VhostUserClient;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The shipped jar as a separate process, the way an operator runs it: vhost-user handshake on its
 * socket, feature switches, the stats socket, SIGTERM (clean exit 0 within a second, sockets removed,
 * a pre-existing tap left as found).
 */
@Tag("privileged")
@Timeout(120)
class CliProcessIT {
    private static final Path JAR = Path.of("target", "jvhost.jar").toAbsolutePath();

    private static void assumePrivileged() {
        assumeTrue("root".equals(System.getProperty("user.name")), "needs root (CAP_NET_ADMIN) to create taps");
        assumeTrue(Files.exists(Path.of("/dev/net/tun")), "needs /dev/net/tun");
        assumeTrue(Files.isRegularFile(JAR), "needs the shaded jar (mvn package): " + JAR);
    }

    private static Process start(List<String> args, Path log) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("-jar");
        cmd.add(JAR.toString());
        cmd.addAll(args);
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    private static void awaitFile(Path p, Process proc, Path log) throws Exception {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!Files.exists(p)) {
            assertTrue(proc.isAlive(), "jvhost exited early:\n" + Files.readString(log));
            assertTrue(System.nanoTime() < end, "no " + p + " after 60 s:\n" + Files.readString(log));
            Thread.sleep(50);
        }
    }

    private static int sh(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        return p.waitFor();
    }

    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor();
        return out;
    }

    @Test
    void servesStopsCleanlyAndLeavesAPreExistingTapAsFound() throws Exception {
        assumePrivileged();
        String suffix = Integer.toString(ThreadLocalRandom.current().nextInt(1 << 20), 36);
        String tap = "jvcli" + suffix;
        Path dir = Files.createTempDirectory("jvhost-cli");
        Path sock = dir.resolve("vm.sock");
        Path stats = dir.resolve("vm.sock.stats");
        Path log = dir.resolve("jvhost.log");
        assertEquals(0, sh("ip", "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr"), "pre-create tap " + tap);
        Process proc = null;
        try {
            proc = start(List.of("--socket-path=" + sock, "--tap=" + tap, "--disable-features=event_idx"), log);
            awaitFile(sock, proc, log);
            awaitFile(stats, proc, log);

            try (VhostUserClient c = VhostUserClient.connect(sock.toString())) {
                long f = c.getFeatures();
                assertTrue(VirtioFeatures.has(f, VirtioFeatures.NET_F_MRG_RXBUF), "MRG_RXBUF offered");
                assertFalse(VirtioFeatures.has(f, VirtioFeatures.RING_F_EVENT_IDX), "--disable-features=event_idx honoured");
                c.setOwner();
            }

            Process q = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "--enable-native-access=ALL-UNNAMED", "-jar", JAR.toString(), "stats", "json",
                    "--socket-path=" + sock).redirectErrorStream(true).start();
            String json = new String(q.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertEquals(0, q.waitFor(), json);
            assertTrue(json.startsWith("{\"queues\":[{\"device\":\"vm0\""), json);

            long t0 = System.nanoTime();
            proc.toHandle().destroy(); // SIGTERM
            assertTrue(proc.waitFor(10, TimeUnit.SECONDS), "exits on SIGTERM");
            long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            String out = Files.readString(log);
            assertEquals(0, proc.exitValue(), out);
            // Prompt, with room for a loaded CI machine: the exit code 0 above already says the clean stop
            // finished inside the shutdown hook's window.
            assertTrue(ms < 5000, "stopped in " + ms + " ms (the spec's conventions ask for prompt exit)\n" + out);
            assertFalse(Files.exists(sock), "socket removed");
            assertFalse(Files.exists(stats), "stats socket removed");
            assertTrue(Files.isRegularFile(dir.resolve("vm.sock.rings")), "the ring journal stays, for the next jvhost on the socket");
            String link = run("ip", "-d", "link", "show", "dev", tap);
            assertTrue(link.contains(tap) && link.contains("tun type tap"), "pre-existing tap still there:\n" + link);
        } finally {
            if (proc != null && proc.isAlive()) {
                proc.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
            sh("ip", "link", "del", "dev", tap);
            Files.deleteIfExists(sock);
            Files.deleteIfExists(stats);
            Files.deleteIfExists(dir.resolve("vm.sock.rings"));
            Files.deleteIfExists(log);
            Files.deleteIfExists(dir);
        }
    }

    /**
     * Client mode with no front-end yet, {@code --metrics} on an ephemeral port, {@code --log-level=warn}:
     * the scrape says "not connected, no session, rings stopped, nothing negotiated", jvhost logs nothing
     * below WARN, and SIGTERM ends it with 0.
     */
    @Test
    void clientModeMetricsBeforeAnyFrontEnd() throws Exception {
        assumePrivileged();
        String tap = "jvclm" + Integer.toString(ThreadLocalRandom.current().nextInt(1 << 20), 36);
        Path dir = Files.createTempDirectory("jvhost-cli");
        Path log = dir.resolve("jvhost.log");
        Process proc = start(List.of("--client", "--socket-path=" + dir.resolve("qemu.sock"), "--tap=" + tap,
                "--metrics=127.0.0.1:0", "--log-level=warn"), log);
        try {
            // --log-level=warn hides the INFO line with the port: find the listening port from the socket table.
            int port = -1;
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (port < 0 && System.nanoTime() < end) {
                assertTrue(proc.isAlive(), "jvhost exited early:\n" + Files.readString(log));
                for (String l : run("ss", "-Hltnp").lines().toList()) {
                    if (l.contains("pid=" + proc.pid() + ",")) {
                        String local = l.trim().split("\\s+")[3];
                        port = Integer.parseInt(local.substring(local.lastIndexOf(':') + 1));
                    }
                }
                Thread.sleep(100);
            }
            assertTrue(port > 0, "no metrics port\n" + Files.readString(log));
            String body = run("busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:" + port + "/metrics");
            for (String line : List.of("jvhost_session_connected{device=\"vm0\"} 0.0", "jvhost_sessions_total{device=\"vm0\"} 0.0",
                    "jvhost_ring_state{device=\"vm0\",direction=\"rx\",queue=\"0\",state=\"stopped\"} 1.0",
                    "jvhost_feature_negotiated{device=\"vm0\",feature=\"version-1\"} 0.0",
                    "jvhost_frames_total{device=\"vm0\",direction=\"tx\",queue=\"0\"} 0.0")) {
                assertTrue(body.lines().anyMatch(line::equals), "no line " + line + " in\n" + body);
            }
            proc.destroy();
            assertTrue(proc.waitFor(10, TimeUnit.SECONDS), "exits on SIGTERM");
            assertEquals(0, proc.exitValue());
            List<String> logged = Files.readAllLines(log);
            assertTrue(logged.stream().noneMatch(l -> l.contains(" INFO ") || l.contains(" DEBUG ")),
                    "--log-level=warn:\n" + String.join("\n", logged));
        } finally {
            if (proc.isAlive()) {
                proc.destroyForcibly();
            }
            sh("ip", "link", "del", tap);
            Files.deleteIfExists(log);
            Files.deleteIfExists(dir.resolve("qemu.sock.rings"));
            Files.deleteIfExists(dir);
        }
    }
}
