package io.jvhost.cli;

import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.StatsRenderer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code jvhost stats --watch} on the back-end's real JSON: rates per second, in-place refresh on a terminal. */
class StatsWatchTest {

    private static String json(long txFrames, long rxBytes, int drops) {
        QueueCounters c = new QueueCounters();
        c.add(Counter.TX_FRAMES, txFrames);
        c.add(Counter.RX_BYTES, rxBytes);
        c.add(Counter.TX_BATCHES, txFrames / 4);
        for (int i = 0; i < drops; i++) {
            c.drop(DropReason.RX_TOO_BIG);
        }
        QueueLatency l = new QueueLatency();
        l.recordService(12_000);
        return StatsRenderer.json(List.of(QueueStats.of("vm0", 0, c, l), QueueStats.of("vm0", 1, new QueueCounters(), l)));
    }

    @Test
    void ratesFromTwoAnswers() {
        List<StatsWatch.Sample> a = StatsWatch.parse(json(1000, 0, 0));
        List<StatsWatch.Sample> b = StatsWatch.parse(json(3000, 1_250_000, 10));
        assertEquals(1000, a.get(0).counters().get("tx_frames"));
        assertEquals(12.0, a.get(0).p99Micros(), 0.1);
        String table = StatsWatch.render(a, b, 2.0, 2000);
        String row = table.lines().filter(l -> l.startsWith("vm0") && l.contains("   0 ")).findFirst().orElseThrow();
        // 2000 frames in 2 s, 1.25 MB = 10 Mbit in 2 s, 10 drops in 2 s, 4 frames per batch.
        assertTrue(row.matches("vm0\\s+0\\s+1000\\s+0\\.00\\s+0\\s+5\\.00\\s+5\\s+0\\s+0\\s+4\\.0\\s+12\\.0"), table);
        assertTrue(table.lines().anyMatch(l -> l.startsWith("total")), table);
    }

    @Test
    @Timeout(10)
    void refreshesInPlaceOnATerminalAndStopsAfterCount() throws InterruptedException {
        AtomicInteger n = new AtomicInteger();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        int rc = StatsWatch.run(() -> json(1000L * n.incrementAndGet(), 0, 0), 100, 3, true,
                new PrintStream(bytes, true, StandardCharsets.UTF_8));
        assertEquals(0, rc);
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertEquals(3, out.split(java.util.regex.Pattern.quote(StatsWatch.HOME_CLEAR), -1).length - 1, out);
        assertEquals(4, n.get(), "one query before the first refresh, one per refresh");

        bytes.reset();
        assertEquals(0, StatsWatch.run(() -> json(5, 0, 0), 100, 2, false, new PrintStream(bytes, true, StandardCharsets.UTF_8)));
        assertTrue(!bytes.toString(StandardCharsets.UTF_8).contains("\033"), "no escape codes into a pipe");
        assertEquals(1, StatsWatch.run(() -> null, 100, 1, false, new PrintStream(new ByteArrayOutputStream())));
    }

    @Test
    void jsonReader() {
        Object v = Json.parse("{\"a\":[1,2.5,\"x\\\"y\",true,null],\"b\":{}}");
        assertEquals("{a=[1, 2.5, x\"y, true, null], b={}}", v.toString());
        assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\":1} x"));
        assertThrows(IllegalArgumentException.class, () -> Json.parse("[1,"));
    }
}
