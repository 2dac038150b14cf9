package io.jvhost.metrics;

import io.jvhost.stats.Counter;
import io.jvhost.stats.DropReason;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.WorkerLoad;
import io.jvhost.stats.WorkerStats;
import io.jvhost.virtq.RingState;
import io.jvhost.virtio.VirtioFeatures;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Supplier;

/**
 * jvhost's Prometheus metrics ({@code --metrics=HOST:PORT}): every family in {@link #FAMILIES},
 * read from the devices at scrape time by one {@link MultiCollector} — one sample per device per
 * scrape, so all families of a scrape come from the same reading and the datapath does nothing for
 * metrics (its counters and histograms are read as {@code jvhost stats} reads them). Served by the
 * Prometheus Java client's HTTP exporter on {@code /metrics}.
 *
 * <p>Labels: {@code device} (vm0, vm1, ... in command-line order), {@code queue} (queue pair index),
 * {@code direction} ({@code tx}: guest → tap, {@code rx}: tap → guest), {@code reason} (drop reason,
 * as in {@code jvhost stats}), {@code state} (ring state), {@code feature} (virtio feature name).
 *
 * <p>The workers shared by all devices ({@link #WORKER_FAMILIES}, from the pool's
 * {@link WorkerStats}) are labelled {@code worker} (its index in the pool, as
 * {@code --queue-affinity} names it).
 */
public final class JvhostMetrics implements MultiCollector {
    private static final String[] DQ = {"device", "queue"};
    private static final String[] DQD = {"device", "queue", "direction"};
    private static final String TX = "tx";
    private static final String RX = "rx";

    /** Service-time bucket bounds in seconds: 1 µs to 1 s. */
    private static final double[] SECONDS = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
            2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1};
    /** Frames-per-batch bucket bounds. */
    private static final double[] FRAMES = {1, 2, 4, 8, 16, 32, 64, 128, 256};

    /** Every family jvhost exports, in exposition order. */
    public static final List<Family> FAMILIES = List.of(
            directional("jvhost_frames", "Frames moved (tx: guest to tap, rx: tap to guest)", Counter.TX_FRAMES, Counter.RX_FRAMES),
            directional("jvhost_bytes", "Frame bytes moved, without the virtio-net header", Counter.TX_BYTES, Counter.RX_BYTES),
            directional("jvhost_kicks", "Kick eventfd wake-ups from the guest", Counter.TX_KICKS, Counter.RX_KICKS),
            directional("jvhost_calls", "Call eventfd writes to the guest (interrupts)", Counter.TX_CALLS, Counter.RX_CALLS),
            directional("jvhost_batches", "Non-empty batches processed", Counter.TX_BATCHES, Counter.RX_BATCHES),
            directional("jvhost_ring_broken", "Times the ring was marked broken (a guest or front-end violation)",
                    Counter.TX_RING_BROKEN, Counter.RX_RING_BROKEN),
            Family.counter("jvhost_drops", "Frames dropped, by reason (names as in jvhost stats)",
                    new String[]{"device", "queue", "direction", "reason"}, (s, p) -> {
                        for (QueueStats q : s.queues()) {
                            for (DropReason r : DropReason.values()) {
                                p.add(q.drops(r), s.device(), qp(q), direction(r), r.name().toLowerCase(Locale.ROOT));
                            }
                        }
                    }),
            perQueue("jvhost_calls_suppressed", "Calls the guest asked not to get (flags / EVENT_IDX)", Counter.CALLS_SUPPRESSED),
            perQueue("jvhost_tx_backpressure", "Times the tap refused TX with EAGAIN and TX waited", Counter.TX_BACKPRESSURE),
            perQueue("jvhost_rx_no_buffers", "Times a frame waited on the tap with no guest RX buffer", Counter.RX_NO_BUFFERS),
            perQueue("jvhost_wakeups", "Worker wake-ups from epoll", Counter.WAKEUPS),
            perQueue("jvhost_empty_polls", "Worker cycles that found no work", Counter.EMPTY_POLLS),
            perQueue("jvhost_memory_faults", "Guest memory faults (the front-end shrank memory it passed)", Counter.MEMORY_FAULTS),
            Family.gauge("jvhost_ring_state", "1 for the ring's current state (stopped, disabled, enabled, broken), else 0",
                    new String[]{"device", "queue", "direction", "state"}, (s, p) -> {
                        for (int i = 0; i < s.rings().size(); i++) {
                            RingState[] r = s.rings().get(i);
                            for (RingState st : RingState.values()) {
                                String name = st.name().toLowerCase(Locale.ROOT);
                                p.add(r[DeviceSample.RX] == st ? 1 : 0, s.device(), Integer.toString(i), RX, name);
                                p.add(r[DeviceSample.TX] == st ? 1 : 0, s.device(), Integer.toString(i), TX, name);
                            }
                        }
                    }),
            Family.gauge("jvhost_session_connected", "1 while a vhost-user front-end is connected",
                    new String[]{"device"}, (s, p) -> p.add(s.connected() ? 1 : 0, s.device())),
            Family.counter("jvhost_sessions", "vhost-user sessions begun", new String[]{"device"},
                    (s, p) -> p.add(s.sessions(), s.device())),
            Family.gauge("jvhost_feature_negotiated",
                    "1 for each offered virtio feature the current session negotiated, 0 for the others",
                    new String[]{"device", "feature"}, (s, p) -> {
                        for (Map.Entry<String, Integer> f : VirtioFeatures.NAMES.entrySet()) {
                            if (VirtioFeatures.has(s.offered(), f.getValue())) {
                                p.add(VirtioFeatures.has(s.negotiated(), f.getValue()) ? 1 : 0, s.device(), f.getKey());
                            }
                        }
                    }),
            Family.histogram("jvhost_service_time_seconds",
                    "Kick (or wake-up) to used-ring publish per batch, both directions, from the workers' HdrHistogram",
                    QueueStats::serviceTime, SECONDS, 1e9),
            Family.histogram("jvhost_batch_frames", "Frames per batch, both directions", QueueStats::batchSizes, FRAMES, 1));

    /** The worker families, in exposition order after {@link #FAMILIES}. */
    public static final List<String> WORKER_FAMILIES = List.of("jvhost_worker_queue_pairs", "jvhost_worker_cycles",
            "jvhost_worker_seconds", "jvhost_worker_sleeps", "jvhost_worker_commands", "jvhost_worker_pair_faults",
            "jvhost_worker_parks");

    private final List<Supplier<DeviceSample>> devices;
    private final Supplier<List<WorkerStats>> workers;

    /** @param devices one sampler per device, called on the scraping thread */
    public JvhostMetrics(List<Supplier<DeviceSample>> devices) {
        this(devices, List::of);
    }

    /**
     * @param devices one sampler per device, called on the scraping thread
     * @param workers the worker pool's load ({@code WorkerPool::stats}), called on the scraping thread
     */
    public JvhostMetrics(List<Supplier<DeviceSample>> devices, Supplier<List<WorkerStats>> workers) {
        this.devices = List.copyOf(devices);
        this.workers = workers;
    }

    @Override
    public MetricSnapshots collect() {
        List<DeviceSample> samples = new ArrayList<>(devices.size());
        for (Supplier<DeviceSample> d : devices) {
            samples.add(d.get());
        }
        List<MetricSnapshot> out = new ArrayList<>(FAMILIES.size() + WORKER_FAMILIES.size());
        for (Family f : FAMILIES) {
            out.add(f.collect(samples));
        }
        out.addAll(workerFamilies(workers.get()));
        return new MetricSnapshots(out);
    }

    /** The per-worker families of one reading of the pool. */
    static List<MetricSnapshot> workerFamilies(List<WorkerStats> ws) {
        String[] w = {"worker"};
        String[] wk = {"worker", "kind"};
        String[] wst = {"worker", "state"};
        GaugeSnapshot.Builder pairs = GaugeSnapshot.builder().name("jvhost_worker_queue_pairs")
                .help("Queue pairs the worker holds now");
        CounterSnapshot.Builder cycles = CounterSnapshot.builder().name("jvhost_worker_cycles")
                .help("Worker duty cycles: busy (moved frames or ran commands) or idle (found nothing)");
        CounterSnapshot.Builder seconds = CounterSnapshot.builder().name("jvhost_worker_seconds")
                .help("Worker time by state: busy cycles, idle cycles awake (polling), asleep in epoll_wait");
        CounterSnapshot.Builder sleeps = CounterSnapshot.builder().name("jvhost_worker_sleeps")
                .help("Times the worker went to sleep in epoll_wait");
        CounterSnapshot.Builder commands = CounterSnapshot.builder().name("jvhost_worker_commands")
                .help("Control commands the worker ran");
        CounterSnapshot.Builder faults = CounterSnapshot.builder().name("jvhost_worker_pair_faults")
                .help("Failures contained to one queue pair (guest-memory faults, errors in a pair's work)");
        CounterSnapshot.Builder parks = CounterSnapshot.builder().name("jvhost_worker_parks")
                .help("Times an idle queue pair was parked (not polled until an event for it)");
        for (WorkerStats s : ws) {
            String idx = Integer.toString(s.index());
            pairs.dataPoint(gauge(s.queuePairs().size(), w, idx));
            cycles.dataPoint(counter(s.get(WorkerLoad.BUSY_CYCLES), wk, idx, "busy"));
            cycles.dataPoint(counter(s.get(WorkerLoad.IDLE_CYCLES), wk, idx, "idle"));
            seconds.dataPoint(counter(s.get(WorkerLoad.BUSY_NANOS) / 1e9, wst, idx, "busy"));
            seconds.dataPoint(counter(s.get(WorkerLoad.IDLE_NANOS) / 1e9, wst, idx, "idle"));
            seconds.dataPoint(counter(s.get(WorkerLoad.SLEEP_NANOS) / 1e9, wst, idx, "asleep"));
            sleeps.dataPoint(counter(s.get(WorkerLoad.SLEEPS), w, idx));
            commands.dataPoint(counter(s.get(WorkerLoad.COMMANDS), w, idx));
            faults.dataPoint(counter(s.get(WorkerLoad.PAIR_FAULTS), w, idx));
            parks.dataPoint(counter(s.get(WorkerLoad.PARKS), w, idx));
        }
        return List.of(pairs.build(), cycles.build(), seconds.build(), sleeps.build(), commands.build(), faults.build(),
                parks.build());
    }

    private static GaugeSnapshot.GaugeDataPointSnapshot gauge(double v, String[] names, String... values) {
        return GaugeSnapshot.GaugeDataPointSnapshot.builder().value(v).labels(Labels.of(names, values)).build();
    }

    private static CounterSnapshot.CounterDataPointSnapshot counter(double v, String[] names, String... values) {
        return CounterSnapshot.CounterDataPointSnapshot.builder().value(v).labels(Labels.of(names, values)).build();
    }

    /**
     * Serves the metrics of {@code devices} on {@code http://HOST:PORT/metrics} until closed.
     *
     * @param hostPort {@code HOST:PORT} ({@code [::1]:PORT} for IPv6; port 0: any free port)
     */
    public static HTTPServer serve(String hostPort, List<Supplier<DeviceSample>> devices) throws IOException {
        return serve(hostPort, devices, List::of);
    }

    /** As {@link #serve(String, List)}, with the worker pool's load ({@code WorkerPool::stats}). */
    public static HTTPServer serve(String hostPort, List<Supplier<DeviceSample>> devices,
                                   Supplier<List<WorkerStats>> workers) throws IOException {
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0 || colon == hostPort.length() - 1) {
            throw new IllegalArgumentException("--metrics=" + hostPort + " is not HOST:PORT (e.g. 127.0.0.1:9477)");
        }
        String host = hostPort.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--metrics=" + hostPort + ": port is not a number", e);
        }
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("--metrics=" + hostPort + ": port out of range");
        }
        PrometheusRegistry registry = new PrometheusRegistry();
        registry.register(new JvhostMetrics(devices, workers));
        return HTTPServer.builder().hostname(host).port(port).registry(registry).buildAndStart();
    }

    private static Family directional(String name, String help, Counter tx, Counter rx) {
        return Family.counter(name, help, DQD, (s, p) -> {
            for (QueueStats q : s.queues()) {
                p.add(q.get(tx), s.device(), qp(q), TX);
                p.add(q.get(rx), s.device(), qp(q), RX);
            }
        });
    }

    private static Family perQueue(String name, String help, Counter c) {
        return Family.counter(name, help, DQ, (s, p) -> {
            for (QueueStats q : s.queues()) {
                p.add(q.get(c), s.device(), qp(q));
            }
        });
    }

    private static String qp(QueueStats q) {
        return Integer.toString(q.queuePair());
    }

    /** The direction a drop reason belongs to; capture drops affect neither ("any"). */
    static String direction(DropReason r) {
        String n = r.name();
        return n.startsWith("TX_") ? TX : n.startsWith("RX_") ? RX : "any";
    }
}
