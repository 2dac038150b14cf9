package io.jvhost.stats;

import io.jvhost.stats.QueueLatency;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QueueLatencyTest {
    @Test
    void recordsAndAccumulates() {
        QueueLatency l = new QueueLatency();
        for (int i = 1; i <= 100; i++) {
            l.recordService(i * 1000L);
        }
        l.recordService(-5);                  // clamped to 1
        l.recordService(Long.MAX_VALUE);      // clamped to the max
        l.recordBatch(0);                     // ignored
        l.recordBatch(32);
        l.recordBatch(1_000_000);             // clamped
        Histogram h = l.serviceTime();
        assertEquals(102, h.getTotalCount());
        assertTrue(Math.abs(h.getValueAtPercentile(50) - 50_000) < 1000);
        assertEquals(2, l.batchSizes().getTotalCount());
        l.recordService(7);
        assertEquals(103, l.serviceTime().getTotalCount()); // cumulative across reads
    }

    @Test
    @Timeout(20)
    void readerAndWriterRunConcurrently() throws Exception {
        QueueLatency l = new QueueLatency();
        int n = 500_000;
        Thread w = new Thread(() -> {
            for (int i = 0; i < n; i++) {
                l.recordService(1000 + (i & 1023));
                l.recordBatch(1 + (i & 63));
            }
        });
        w.start();
        while (w.isAlive()) {
            l.serviceTime();
            l.batchSizes();
        }
        w.join();
        assertEquals(n, l.serviceTime().getTotalCount());
        assertEquals(n, l.batchSizes().getTotalCount());
    }
}
