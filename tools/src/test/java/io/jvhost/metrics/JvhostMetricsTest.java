package io.jvhost.metrics;

import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.WorkerLoad;
import io.jvhost.virtq.RingState;
import io.jvhost.virtio.VirtioFeatures;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The exporter over real HTTP on loopback, fed by real counters and HdrHistogram recorders: every
 * family is there with its labels, values are read at scrape time (a second scrape sees what changed
 * in between), the histogram buckets are cumulative and end at +Inf, and {@code promtool check
 * metrics} (Debian's prometheus package, installed by tools/install-deps) accepts the output.
 */
class JvhostMetricsTest {

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void scrapeShowsEveryFamilyReadAtScrapeTime() throws Exception {
        QueueCounters c = new QueueCounters();
        QueueLatency l = new QueueLatency();
        c.add(Counter.TX_FRAMES, 10);
        c.add(Counter.RX_FRAMES, 7);
        c.add(Counter.TX_BYTES, 1500);
        c.drop(DropReason.TX_TOO_SHORT);
        c.increment(Counter.RX_RING_BROKEN);
        l.recordService(3_000);     // 3 µs
        l.recordService(2_000_000); // 2 ms
        l.recordBatch(4);
        AtomicLong scrapes = new AtomicLong();
        long offered = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
        HTTPServer server = JvhostMetrics.serve("127.0.0.1:0", List.of(() -> {
            scrapes.incrementAndGet();
            return new DeviceSample("vm0", List.of(QueueStats.of("vm0", 0, c, l)),
                    List.<RingState[]>of(new RingState[]{RingState.BROKEN, RingState.ENABLED}), true, 3, offered,
                    VirtioFeatures.bit(VirtioFeatures.F_VERSION_1));
        }));
        try {
            String body = scrape(server.getPort());
            assertTrue(scrapes.get() >= 1);
            assertLine(body, "jvhost_frames_total{device=\"vm0\",direction=\"tx\",queue=\"0\"} 10.0");
            assertLine(body, "jvhost_frames_total{device=\"vm0\",direction=\"rx\",queue=\"0\"} 7.0");
            assertLine(body, "jvhost_bytes_total{device=\"vm0\",direction=\"tx\",queue=\"0\"} 1500.0");
            assertLine(body, "jvhost_drops_total{device=\"vm0\",direction=\"tx\",queue=\"0\",reason=\"tx_too_short\"} 1.0");
            assertLine(body, "jvhost_drops_total{device=\"vm0\",direction=\"any\",queue=\"0\",reason=\"capture_no_buffer\"} 0.0");
            assertLine(body, "jvhost_ring_broken_total{device=\"vm0\",direction=\"rx\",queue=\"0\"} 1.0");
            assertLine(body, "jvhost_ring_state{device=\"vm0\",direction=\"rx\",queue=\"0\",state=\"broken\"} 1.0");
            assertLine(body, "jvhost_ring_state{device=\"vm0\",direction=\"tx\",queue=\"0\",state=\"enabled\"} 1.0");
            assertLine(body, "jvhost_ring_state{device=\"vm0\",direction=\"tx\",queue=\"0\",state=\"stopped\"} 0.0");
            assertLine(body, "jvhost_session_connected{device=\"vm0\"} 1.0");
            assertLine(body, "jvhost_sessions_total{device=\"vm0\"} 3.0");
            assertLine(body, "jvhost_feature_negotiated{device=\"vm0\",feature=\"version-1\"} 1.0");
            assertLine(body, "jvhost_feature_negotiated{device=\"vm0\",feature=\"mrg-rxbuf\"} 0.0");
            // 3 µs lands in (2.5 µs, 5 µs], 2 ms in (1 ms, 2.5 ms]: cumulative counts.
            assertLine(body, "jvhost_service_time_seconds_bucket{device=\"vm0\",queue=\"0\",le=\"2.5E-6\"} 0");
            assertLine(body, "jvhost_service_time_seconds_bucket{device=\"vm0\",queue=\"0\",le=\"5.0E-6\"} 1");
            assertLine(body, "jvhost_service_time_seconds_bucket{device=\"vm0\",queue=\"0\",le=\"0.001\"} 1");
            assertLine(body, "jvhost_service_time_seconds_bucket{device=\"vm0\",queue=\"0\",le=\"0.0025\"} 2");
            assertLine(body, "jvhost_service_time_seconds_bucket{device=\"vm0\",queue=\"0\",le=\"+Inf\"} 2");
            assertLine(body, "jvhost_service_time_seconds_count{device=\"vm0\",queue=\"0\"} 2");
            assertLine(body, "jvhost_batch_frames_bucket{device=\"vm0\",queue=\"0\",le=\"4.0\"} 1");
            for (Family f : JvhostMetrics.FAMILIES) {
                assertTrue(body.contains("# TYPE " + f.name), "family " + f.name + " in\n" + body);
            }
            promtool(body);

            // Values are read at scrape time: what the workers count meanwhile shows in the next scrape.
            c.add(Counter.TX_FRAMES, 5);
            assertLine(scrape(server.getPort()), "jvhost_frames_total{device=\"vm0\",direction=\"tx\",queue=\"0\"} 15.0");
            System.out.println("metrics sample:\n" + body.lines().filter(x -> x.startsWith("jvhost_frames")
                    || x.startsWith("jvhost_service_time_seconds_bucket")).reduce("", (a, b) -> a + b + "\n"));
        } finally {
            server.close();
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void workersOfThePoolAreExported() throws Exception {
        WorkerLoad w0 = new WorkerLoad();
        w0.add(WorkerLoad.BUSY_CYCLES, 5);
        w0.add(WorkerLoad.IDLE_CYCLES, 9);
        w0.add(WorkerLoad.BUSY_NANOS, 2_000_000_000L);
        w0.add(WorkerLoad.SLEEP_NANOS, 500_000_000L);
        w0.add(WorkerLoad.PARKS, 3);
        w0.setPairs(List.of("vm0 q0", "vm1 q0"));
        HTTPServer server = JvhostMetrics.serve("127.0.0.1:0", List.of(),
                () -> List.of(w0.snapshot(0, "jvhost-w0", 1, 42), new WorkerLoad().snapshot(1, "jvhost-w1", -1, 43)));
        try {
            String body = scrape(server.getPort());
            assertLine(body, "jvhost_worker_queue_pairs{worker=\"0\"} 2.0");
            assertLine(body, "jvhost_worker_queue_pairs{worker=\"1\"} 0.0");
            assertLine(body, "jvhost_worker_cycles_total{kind=\"busy\",worker=\"0\"} 5.0");
            assertLine(body, "jvhost_worker_cycles_total{kind=\"idle\",worker=\"0\"} 9.0");
            assertLine(body, "jvhost_worker_seconds_total{state=\"busy\",worker=\"0\"} 2.0");
            assertLine(body, "jvhost_worker_seconds_total{state=\"asleep\",worker=\"0\"} 0.5");
            assertLine(body, "jvhost_worker_parks_total{worker=\"0\"} 3.0");
            for (String f : JvhostMetrics.WORKER_FAMILIES) {
                assertTrue(body.contains("# TYPE " + f), "family " + f + " in\n" + body);
            }
            promtool(body);
        } finally {
            server.close();
        }
    }

    @Test
    void badAddressesAreRefusedWithTheOptionName() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> JvhostMetrics.serve("9477", List.of()));
        assertTrue(e.getMessage().contains("--metrics=9477"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> JvhostMetrics.serve("127.0.0.1:http", List.of()));
    }

    static String scrape(int port) throws IOException, InterruptedException {
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + port + "/metrics")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode());
        return r.body();
    }

    private static void assertLine(String body, String line) {
        assertTrue(body.lines().anyMatch(line::equals), "no line\n  " + line + "\nin\n" + body);
    }

    /** {@code promtool check metrics} on the scrape (the Prometheus project's own linter). */
    static void promtool(String body) throws IOException, InterruptedException {
        Path exe = Path.of("/usr/bin/promtool");
        if (!Files.isExecutable(exe)) {
            System.out.println("promtool not installed (tools/install-deps installs it): lint skipped here; MetricsQemuIT requires it");
            return;
        }
        Process p = new ProcessBuilder(exe.toString(), "check", "metrics").redirectErrorStream(true).start();
        p.getOutputStream().write(body.getBytes(StandardCharsets.UTF_8));
        p.getOutputStream().close();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), "promtool check metrics:\n" + out);
    }
}
