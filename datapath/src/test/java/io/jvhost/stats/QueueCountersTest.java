package io.jvhost.stats;

import io.jvhost.stats.QueueStats;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QueueCountersTest {
    @Test
    void countsAndDrops() {
        QueueCounters c = new QueueCounters();
        c.add(Counter.TX_BYTES, 1500);
        c.increment(Counter.TX_FRAMES);
        c.increment(Counter.TX_FRAMES);
        c.drop(DropReason.TX_TOO_SHORT);
        c.drop(DropReason.RX_TOO_BIG);
        c.drop(DropReason.RX_TOO_BIG);
        assertEquals(1500, c.get(Counter.TX_BYTES));
        assertEquals(2, c.get(Counter.TX_FRAMES));
        assertEquals(0, c.get(Counter.RX_FRAMES));
        assertEquals(2, c.drops(DropReason.RX_TOO_BIG));
        assertEquals(3, c.totalDrops());
        long[] s = c.snapshot();
        assertEquals(Counter.count() + DropReason.count(), s.length);
        QueueStats q = new QueueStats("d", 0, s, null, null);
        assertEquals(2, q.get(Counter.TX_FRAMES));
        assertEquals(1, q.drops(DropReason.TX_TOO_SHORT));
        assertEquals(3, q.totalDrops());
    }

    @Test
    @Timeout(20)
    void readerSeesMonotonicValuesWhileWorkerWrites() throws Exception {
        QueueCounters c = new QueueCounters();
        int n = 2_000_000;
        Thread w = new Thread(() -> {
            for (int i = 0; i < n; i++) {
                c.increment(Counter.RX_FRAMES);
                c.add(Counter.RX_BYTES, 64);
            }
        });
        w.start();
        long last = 0;
        while (w.isAlive()) {
            long v = c.get(Counter.RX_FRAMES);
            assertTrue(v >= last);
            last = v;
        }
        w.join();
        assertEquals(n, c.get(Counter.RX_FRAMES));
        assertEquals(64L * n, c.get(Counter.RX_BYTES));
    }
}
