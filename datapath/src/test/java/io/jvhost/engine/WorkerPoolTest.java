package io.jvhost.engine;

import io.jvhost.nativ.Sched;
import io.jvhost.stats.WorkerStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.BitSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Placement in the {@link WorkerPool}: least loaded by count, by hand, lazily started, pinned. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class WorkerPoolTest {

    static WorkerPool pool(int workers, int[] cpus, Map<String, Integer> affinity) {
        return new WorkerPool(new WorkerPool.Settings("t", workers, cpus, affinity, WorkerConfig.defaults()));
    }

    @Test
    void leastLoadedByCountStartingWorkersOnlyWhenNeeded() {
        try (WorkerPool p = pool(3, new int[0], Map.of())) {
            assertEquals(List.of(), p.workers(), "no thread before a pair joins");
            Worker w0 = p.assign("a", 0);
            assertEquals(1, p.workers().size());
            Worker w1 = p.assign("b", 0);
            Worker w2 = p.assign("c", 0);
            assertEquals(List.of(w0, w1, w2), p.workers(), "one worker per pair up to the limit");
            assertEquals(List.of(0, 1, 2), p.workers().stream().map(Worker::index).toList());
            assertSame(w0, p.assign("d", 0), "then the least loaded (lowest index on a tie)");
            assertSame(w1, p.assign("e", 0));
            assertArrayEquals(new int[] {2, 2, 1}, p.loads());
            p.release(w0);
            p.release(w0);
            assertArrayEquals(new int[] {0, 2, 1}, p.loads());
            assertSame(w0, p.assign("f", 0), "a pair that left makes room");
            assertEquals(3, p.workers().size(), "never more threads than workers");
            for (Worker w : p.workers()) {
                assertTrue(w.running());
                assertTrue(w.name().startsWith("jvhost-t"), w.name());
            }
        }
    }

    @Test
    void byHandPlacementAndIsolatedWorkers() {
        try (WorkerPool p = pool(3, new int[0], Map.of("vm0:0", 2, "vm0:1", 2))) {
            Worker w2 = p.assign("vm0", 0);
            assertEquals(2, w2.index());
            assertSame(w2, p.assign("vm0", 1));
            assertSame(w2, p.placed("vm0", 1));
            assertNull(p.placed("vm1", 0));
            // worker 2 is reserved for what was placed on it by hand
            for (int i = 0; i < 6; i++) {
                assertTrue(p.assign("vm" + (i + 1), 0).index() < 2);
            }
            assertArrayEquals(new int[] {3, 3, 2}, p.loads());
        }
        // every worker reserved by hand: the rest still has to go somewhere
        try (WorkerPool p = pool(1, new int[0], Map.of("vm0:0", 0))) {
            assertEquals(0, p.assign("vm1", 0).index());
        }
    }

    @Test
    void affinityIsParsedAndChecked() {
        assertEquals(Map.of("vm0:0", 1, "vm0:1", 2, "a:b:3", 0), WorkerPool.parseAffinity("vm0:0=1, vm0:1=2,a:b:3=0"));
        assertEquals(Map.of(), WorkerPool.parseAffinity(""));
        for (String bad : new String[] {"vm0", "vm0:0", "vm0:=1", ":0=1", "vm0:x=1", "vm0:0=y", "vm0:0=1,vm0:0=2",
            "vm0:-1=0", "vm0:0=-2", "vm0:0="}) {
            assertThrows(IllegalArgumentException.class, () -> WorkerPool.parseAffinity(bad), bad);
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> pool(2, new int[0], Map.of("vm0:0", 2)));
        assertTrue(e.getMessage().contains("workers 0..1"), e.getMessage());
    }

    @Test
    void workersArePinnedInTurn() throws Exception {
        BitSet allowed = Sched.affinity();
        int[] cpus = allowed.stream().toArray();
        try (WorkerPool p = pool(cpus.length + 1, cpus, Map.of())) {
            for (int i = 0; i <= cpus.length; i++) {
                p.assign("d" + i, 0);
            }
            for (Worker w : p.workers()) {
                int want = cpus[w.index() % cpus.length];
                assertEquals(want, w.cpu());
                WorkerStats st = awaitStarted(w);
                BitSet one = new BitSet();
                one.set(want);
                assertEquals(one, Sched.affinity(st.tid()), w.name() + " is pinned to CPU " + want);
                assertEquals(want, st.pinnedCpu());
            }
        }
    }

    @Test
    void cpusTheProcessMayNotUseAreRefused() {
        BitSet allowed = Sched.affinity();
        int outside = allowed.nextClearBit(0);
        String prop = io.jvhost.config.Configuration.CPUS.property();
        String old = System.getProperty(prop);
        try {
            System.setProperty(prop, Integer.toString(outside));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> WorkerPool.Settings.configured(Map.of(), WorkerConfig.defaults()));
            assertTrue(e.getMessage().contains("may not run on CPU " + outside), e.getMessage());
            System.setProperty(prop, Integer.toString(allowed.nextSetBit(0)));
            WorkerPool.Settings s = WorkerPool.Settings.configured(Map.of(), WorkerConfig.defaults());
            assertEquals(1, s.workers(), "default: one worker per CPU given");
        } finally {
            if (old == null) {
                System.clearProperty(prop);
            } else {
                System.setProperty(prop, old);
            }
        }
        assertEquals(allowed.cardinality(), WorkerPool.Settings.configured(Map.of(), WorkerConfig.defaults()).workers(),
                "default: one worker per CPU the process may use");
    }

    private static WorkerStats awaitStarted(Worker w) throws InterruptedException {
        long t0 = System.nanoTime();
        while (w.stats().tid() == 0 && System.nanoTime() - t0 < 10_000_000_000L) {
            Thread.sleep(5);
        }
        return w.stats(); // the tid is published once the thread pinned itself
    }
}
