package io.jvhost.engine;

import io.jvhost.config.Configuration;
import io.jvhost.config.CpuList;
import io.jvhost.nativ.Sched;
import io.jvhost.stats.WorkerStats;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The worker threads that run the queue pairs of every device in the process — OVS-DPDK's PMD
 * threads, each polling many queues — instead of one thread per queue pair.
 *
 * <h2>Placement</h2>
 * A queue pair is assigned when it joins ({@link QueuePairProxy#attach}: its device's front-end
 * started a ring) and gives its place back when it leaves ({@link #release}). A pair named in the
 * queue affinity ({@code --queue-affinity=DEVICE:QUEUE=WORKER,…}) goes to that worker; any other pair
 * goes to the worker holding the fewest pairs (ties: the lowest index). Workers named in the affinity
 * take only the pairs placed on them by hand while another worker exists (OVS's
 * {@code pmd-rxq-isolate}): a pair pinned by hand to a worker keeps that worker to itself.
 *
 * <h2>Threads</h2>
 * At most {@link #size()} workers ({@code --workers}; default one per pair in use up to the CPUs the
 * process may use, or up to the {@code --cpus} given). A worker's thread is started the first time a
 * pair is placed on it and then stays (asleep in {@code epoll_wait} while it holds nothing): the
 * process has at most {@code size()} worker threads whatever the number of devices. Worker
 * {@code i} is pinned to the {@code i % n}-th of the {@code n} CPUs of {@code --cpus}, when given.
 *
 * <p>Threading: {@link #assign} / {@link #release} from control threads (serialised here);
 * {@link #stats()} from any thread.
 */
public final class WorkerPool implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(WorkerPool.class.getName());

    /**
     * How a pool is made.
     *
     * @param name      worker thread names: {@code jvhost-<name><index>}
     * @param workers   most worker threads (≥ 1)
     * @param cpus      CPUs to pin workers to in turn (empty: not pinned)
     * @param affinity  {@code "<device>:<queue pair>"} → worker index, for pairs placed by hand
     * @param worker    the tuning every worker runs with
     */
    public record Settings(String name, int workers, int[] cpus, Map<String, Integer> affinity, WorkerConfig worker) {
        public Settings {
            if (workers < 1) {
                throw new IllegalArgumentException("workers " + workers);
            }
            cpus = cpus.clone();
            affinity = Map.copyOf(affinity);
            for (Map.Entry<String, Integer> e : affinity.entrySet()) {
                if (e.getValue() < 0 || e.getValue() >= workers) {
                    throw new IllegalArgumentException("queue affinity " + e.getKey() + "=" + e.getValue()
                            + ": there are workers 0.." + (workers - 1));
                }
            }
        }

        @Override
        public int[] cpus() {
            return cpus.clone();
        }

        /**
         * From {@link Configuration}: {@link Configuration#WORKERS} workers (0: one per queue pair up
         * to the CPUs this process may use, or to the {@link Configuration#CPUS} given), pinned to
         * {@link Configuration#CPUS}, with the given by-hand placement.
         *
         * @throws IllegalArgumentException a CPU the process may not use, or an affinity naming a
         *                                  worker that cannot exist
         */
        public static Settings configured(Map<String, Integer> affinity, WorkerConfig worker) {
            String list = Configuration.CPUS.get();
            int[] cpus = list.isBlank() ? new int[0] : CpuList.parse(list);
            BitSet allowed = Sched.affinity();
            for (int c : cpus) {
                if (!allowed.get(c)) {
                    throw new IllegalArgumentException("--cpus=" + list + ": this process may not run on CPU " + c
                            + " (allowed: " + CpuList.format(allowed.stream().toArray()) + ")");
                }
            }
            int n = Configuration.WORKERS.get();
            if (n == 0) {
                n = cpus.length > 0 ? cpus.length : Math.max(1, allowed.cardinality());
            }
            return new Settings("w", n, cpus, affinity, worker);
        }
    }

    private final Settings settings;
    private final Worker[] workers;
    private final int[] load;
    private final boolean[] isolated;
    private boolean closed;

    public WorkerPool(Settings settings) {
        this.settings = settings;
        this.workers = new Worker[settings.workers()];
        this.load = new int[settings.workers()];
        this.isolated = new boolean[settings.workers()];
        for (int w : settings.affinity().values()) {
            isolated[w] = true;
        }
    }

    /** A pool from {@link Configuration} ({@link Settings#configured}). */
    public static WorkerPool configured(Map<String, Integer> affinity, WorkerConfig worker) {
        return new WorkerPool(Settings.configured(affinity, worker));
    }

    /**
     * The pool of a device that has workers of its own: one per queue pair, pair {@code i} on worker
     * {@code i} (thread {@code jvhost-<device>-q<i>}), all started now and ended by {@link #close}.
     */
    public static WorkerPool perDevice(String device, int queuePairs, WorkerConfig worker) {
        Map<String, Integer> affinity = new LinkedHashMap<>();
        for (int i = 0; i < queuePairs; i++) {
            affinity.put(key(device, i), i);
        }
        WorkerPool p = new WorkerPool(new Settings(device + "-q", queuePairs, new int[0], affinity, worker));
        try {
            synchronized (p) {
                for (int i = 0; i < queuePairs; i++) {
                    p.worker(i);
                }
            }
        } catch (RuntimeException | Error e) {
            p.close();
            throw e;
        }
        return p;
    }

    /**
     * Parses {@code --queue-affinity}: {@code DEVICE:QUEUE=WORKER} items separated by commas
     * (e.g. {@code vm0:0=1,vm0:1=2}), DEVICE a device name as {@code jvhost stats} shows it, QUEUE a
     * queue pair index, WORKER a worker index.
     *
     * @throws IllegalArgumentException a malformed item or a pair named twice (the message names it)
     */
    public static Map<String, Integer> parseAffinity(String spec) {
        Map<String, Integer> m = new LinkedHashMap<>();
        if (spec == null || spec.isBlank()) {
            return m;
        }
        for (String raw : spec.split(",")) {
            String item = raw.strip();
            int colon = item.lastIndexOf(':');
            int eq = item.lastIndexOf('=');
            if (colon <= 0 || eq < colon + 2 || eq == item.length() - 1) {
                throw new IllegalArgumentException("queue affinity '" + item + "' is not DEVICE:QUEUE=WORKER");
            }
            int queue;
            int worker;
            try {
                queue = Integer.parseInt(item.substring(colon + 1, eq).strip());
                worker = Integer.parseInt(item.substring(eq + 1).strip());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("queue affinity '" + item + "' is not DEVICE:QUEUE=WORKER", e);
            }
            if (queue < 0 || worker < 0) {
                throw new IllegalArgumentException("queue affinity '" + item + "': negative index");
            }
            String key = key(item.substring(0, colon).strip(), queue);
            if (m.put(key, worker) != null) {
                throw new IllegalArgumentException("queue affinity names " + key + " twice");
            }
        }
        return m;
    }

    static String key(String device, int queuePair) {
        return device + ":" + queuePair;
    }

    /** Most worker threads. */
    public int size() {
        return workers.length;
    }

    public Settings settings() {
        return settings;
    }

    /**
     * The worker queue pair {@code queuePair} of {@code device} joins (its thread started if it was
     * not), counted as holding one more pair until {@link #release}d. Control thread.
     *
     * @throws IllegalStateException when the pool is closed
     */
    public synchronized Worker assign(String device, int queuePair) {
        if (closed) {
            throw new IllegalStateException("worker pool closed");
        }
        Integer fixed = settings.affinity().get(key(device, queuePair));
        int k = fixed != null ? fixed : leastLoaded();
        Worker w = worker(k);
        load[k]++;
        LOG.log(System.Logger.Level.DEBUG, "{0} q{1} joins {2} ({3} pair(s) there now)", device, queuePair, w.name(),
                load[k]);
        return w;
    }

    private int leastLoaded() {
        boolean anyOpen = false;
        for (boolean iso : isolated) {
            anyOpen |= !iso;
        }
        int best = -1;
        for (int k = 0; k < workers.length; k++) {
            if (anyOpen && isolated[k]) {
                continue;
            }
            if (best < 0 || load[k] < load[best]) {
                best = k;
            }
        }
        return best;
    }

    /** Worker {@code k}, created and started on first use. */
    private Worker worker(int k) {
        Worker w = workers[k];
        if (w == null) {
            int[] cpus = settings.cpus();
            int cpu = cpus.length == 0 ? -1 : cpus[k % cpus.length];
            w = new Worker(settings.name() + k, settings.worker(), k, cpu);
            w.start();
            workers[k] = w;
        }
        return w;
    }

    /** {@code w} holds one pair fewer (the pair left it). Control thread. */
    public synchronized void release(Worker w) {
        for (int k = 0; k < workers.length; k++) {
            if (workers[k] == w && load[k] > 0) {
                load[k]--;
                return;
            }
        }
    }

    /**
     * The worker the placement fixes for this pair (by hand), when it already runs; else null.
     * Control thread.
     */
    public synchronized Worker placed(String device, int queuePair) {
        Integer fixed = settings.affinity().get(key(device, queuePair));
        return fixed == null ? null : workers[fixed];
    }

    /** The workers started so far, by index. Any thread. */
    public synchronized List<Worker> workers() {
        List<Worker> out = new ArrayList<>();
        for (Worker w : workers) {
            if (w != null) {
                out.add(w);
            }
        }
        return out;
    }

    /** Pairs each worker slot holds (index = worker index; 0 for a worker not started). */
    public synchronized int[] loads() {
        return load.clone();
    }

    /** The load of every started worker. Any thread; does not wake the workers. */
    public List<WorkerStats> stats() {
        List<WorkerStats> out = new ArrayList<>();
        for (Worker w : workers()) {
            out.add(w.stats());
        }
        return out;
    }

    /**
     * Ends every worker (resetting the pairs they still hold). Devices should have detached their
     * pairs first. Idempotent.
     */
    @Override
    public void close() {
        List<Worker> ws;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            ws = workers();
        }
        for (Worker w : ws) {
            w.close();
        }
    }
}
