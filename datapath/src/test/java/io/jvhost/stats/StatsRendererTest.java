package io.jvhost.stats;

import io.jvhost.stats.StatsRenderer;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.QueueLatency;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

class StatsRendererTest {
    @Test
    void rendersTableAndJson() {
        QueueCounters c = new QueueCounters();
        QueueLatency l = new QueueLatency();
        c.add(Counter.TX_FRAMES, 10);
        c.add(Counter.RX_BYTES, 12345);
        c.drop(DropReason.TX_BAD_GSO);
        l.recordService(2500);
        l.recordBatch(4);
        List<QueueStats> qs = List.of(QueueStats.of("vm\"0", 0, c, l), QueueStats.of("vm1", 1, new QueueCounters(), null));
        String t = StatsRenderer.table(qs);
        assertTrue(t.contains("tx_frames"), t);
        assertTrue(t.contains("TX_BAD_GSO"), t);
        assertTrue(t.contains("12345"), t);
        String j = StatsRenderer.json(qs);
        assertTrue(j.startsWith("{\"queues\":[{\"device\":\"vm\\\"0\",\"queue_pair\":0"), j);
        assertTrue(j.contains("\"tx_frames\":10"), j);
        assertTrue(j.contains("\"tx_bad_gso\":1"), j);
        assertTrue(j.contains("\"service_time_ns\":{\"count\":1"), j);
        assertTrue(j.contains("\"p99_9\":"), j);
        assertTrue(j.endsWith("}]}"), j);
        int depth = 0;
        for (char ch : j.replace("\\\"", "").toCharArray()) {
            depth += ch == '{' || ch == '[' ? 1 : ch == '}' || ch == ']' ? -1 : 0;
            assertTrue(depth >= 0);
        }
        assertTrue(depth == 0);
        assertTrue(StatsRenderer.percentiles("rtt", l.serviceTime()).contains("p99.9"));
    }
}
