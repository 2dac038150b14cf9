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

    @Test
    void rendersWorkerLoad() {
        WorkerLoad l = new WorkerLoad();
        l.add(WorkerLoad.BUSY_NANOS, 250);
        l.add(WorkerLoad.IDLE_NANOS, 250);
        l.add(WorkerLoad.SLEEP_NANOS, 500);
        l.add(WorkerLoad.BUSY_CYCLES, 7);
        l.setCpu(1);
        l.setPairs(List.of("vm0 q0", "vm1 q0"));
        List<WorkerStats> ws = List.of(l.snapshot(0, "jvhost-w0", 1, 4242), new WorkerLoad().snapshot(1, "jvhost-w1", -1, 0));
        assertTrue(ws.get(0).busyShare() == 0.25 && ws.get(0).awakeShare() == 0.5);
        String t = StatsRenderer.workers(ws);
        assertTrue(t.contains("busy%"), t);
        assertTrue(t.lines().anyMatch(x -> x.startsWith("jvhost-w0") && x.contains(" 25.0 ") && x.contains(" 50.0 ")
                && x.endsWith("vm0 q0, vm1 q0")), t);
        assertTrue(t.lines().anyMatch(x -> x.startsWith("jvhost-w1") && x.endsWith(" -")), t);
        String j = StatsRenderer.json(List.of(), ws);
        assertTrue(j.startsWith("{\"queues\":[],\"workers\":[{\"index\":0,\"name\":\"jvhost-w0\",\"pinned_cpu\":1,"), j);
        assertTrue(j.contains("\"queue_pairs\":[\"vm0 q0\",\"vm1 q0\"]"), j);
        assertTrue(j.contains("\"busy_cycles\":7") && j.contains("\"sleep_ns\":500"), j);
        assertTrue(j.endsWith("}]}"), j);
    }
}
