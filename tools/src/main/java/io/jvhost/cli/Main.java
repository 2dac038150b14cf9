package io.jvhost.cli;

import io.jvhost.device.NetDevice;
import io.jvhost.engine.QueuePair;
import io.jvhost.engine.QueuePairProxy;
import io.jvhost.config.CpuList;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.engine.WorkerPool;
import io.jvhost.metrics.DeviceSample;
import io.jvhost.metrics.JvhostMetrics;
import io.jvhost.nativ.NativeException;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.RingState;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserClientMode;
import io.jvhost.vhostuser.VhostUserServer;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import jdk.jfr.Recording;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * Entry point of the {@code jvhost} command: the demo (default), a vhost-user-net back-end, or
 * the {@code stats} client. Exit codes: 0 success, 1 runtime failure, 2 bad command line.
 */
public final class Main {
    private static final System.Logger LOG = System.getLogger(Main.class.getName());

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    static int run(String[] args) {
        if (args.length > 0 && "demo".equals(args[0])) {
            LogLineFormatter.install(java.util.logging.Level.INFO);
            // The demo has its own options (e.g. --seconds N).
            return io.jvhost.demo.Demo.run(Arrays.copyOfRange(args, 1, args.length));
        }
        Options o;
        try {
            o = Options.parse(args);
            LogLineFormatter.install(LogLineFormatter.parseLevel(o.string(Options.LOG_LEVEL, Options.LOG_LEVEL_DEFAULT)));
        } catch (IllegalArgumentException e) {
            System.err.println("jvhost: " + e.getMessage());
            return 2;
        }
        if (o.flag(Options.HELP)) {
            System.out.print(Options.usage());
            return 0;
        }
        try {
            o.applyTunables();
        } catch (IllegalArgumentException e) {
            System.err.println("jvhost: " + e.getMessage());
            return 2;
        }
        if (o.flag(Options.PRINT_CAPABILITIES)) {
            // vhost-user.rst "Backend program conventions": a JSON object with the device type.
            System.out.println("{\n  \"type\": \"net\"\n}");
            return 0;
        }
        String cmd = o.positional().isEmpty() ? null : o.positional().get(0);
        try {
            int[] activated = Systemd.listenFds();
            if (cmd == null && !o.has(Options.SOCKET_PATH) && !o.has(Options.FD) && activated.length == 0) {
                return io.jvhost.demo.Demo.run(new String[0]);
            }
            if ("stats".equals(cmd)) {
                return stats(o);
            }
            if (cmd != null) {
                System.err.println("jvhost: unknown command '" + cmd + "'\n" + Options.usage());
                return 2;
            }
            return serve(o, activated);
        } catch (IllegalArgumentException e) {
            System.err.println("jvhost: " + e.getMessage());
            return 2;
        } catch (NativeException e) {
            System.err.println("jvhost: " + e.getMessage());
            return 1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        }
    }

    private static int stats(Options o) throws InterruptedException {
        String path = o.string(Options.STATS_PATH, null);
        if (path == null) {
            String sock = o.string(Options.SOCKET_PATH, null);
            if (sock == null) {
                throw new IllegalArgumentException("stats needs --socket-path=PATH (or --stats-path=PATH) of the running back-end");
            }
            path = sock + ".stats";
        }
        if (o.flag(Options.WATCH)) {
            String p = path;
            int count = o.integer(Options.COUNT, 0, 0, Integer.MAX_VALUE);
            return StatsWatch.run(() -> StatsEndpoint.fetch(p, "json"), o.intervalMillis(), count,
                    System.console() != null, System.out);
        }
        return StatsEndpoint.query(path, o.positional().contains("json"));
    }

    /** One device: its back-end, its vhost-user endpoint and its stats socket. */
    private record Device(NetDevice device, AutoCloseable endpoint, StatsEndpoint stats, FeatureSet features) {
        void close() {
            closeQuietly(stats);
            closeQuietly(endpoint);
            device.close();
        }

        /** What the metrics read at a scrape. Any thread; wakes no worker. */
        DeviceSample sample() {
            List<RingState[]> rings = new ArrayList<>();
            for (int i = 0; i < device.maxQueuePairs(); i++) {
                QueuePairProxy p = device.queuePair(i);
                rings.add(new RingState[]{p.ringState(QueuePair.RX), p.ringState(QueuePair.TX)});
            }
            boolean connected;
            long sessions;
            if (endpoint instanceof VhostUserServer s) {
                connected = s.sessionActive();
                sessions = s.sessionsAccepted();
            } else {
                VhostUserClientMode c = (VhostUserClientMode) endpoint;
                connected = c.sessionActive();
                sessions = c.connects();
            }
            long offered = device.features() & features.virtio()
                    & ~(1L << VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES);
            return new DeviceSample(device.name(), device.stats(), rings, connected, sessions, offered,
                    connected ? device.negotiatedFeatures() : 0);
        }
    }

    private static int serve(Options o, int[] activated) {
        FeatureSet features = FeatureSet.all();
        for (String f : o.disabledFeatures()) {
            features = features.without(f);
        }
        List<String> sockets = o.strings(Options.SOCKET_PATH);
        List<String> taps = o.strings(Options.TAP);
        boolean client = o.flag(Options.CLIENT);
        boolean inherited = o.has(Options.FD) || activated.length > 0;
        if (client && sockets.isEmpty()) {
            throw new IllegalArgumentException("--client needs --socket-path=PATH of the front-end's socket");
        }
        if (o.has(Options.FD) && activated.length > 0) {
            throw new IllegalArgumentException("socket-activated (LISTEN_FDS=" + activated.length
                    + "): leave out --fd=N, the inherited sockets are served");
        }
        if (inherited && !sockets.isEmpty()) {
            throw new IllegalArgumentException(activated.length > 0
                    ? "socket-activated (LISTEN_FDS=" + activated.length + "): leave out --socket-path, the unit's"
                    + " ListenStream= names the socket" : "give either --fd=N or --socket-path=PATH, not both");
        }
        int count = activated.length > 0 ? activated.length : inherited ? 1 : sockets.size();
        if (taps.size() > Math.max(1, count)) {
            throw new IllegalArgumentException("more --tap than devices (one device per --socket-path or inherited socket)");
        }
        WorkerConfig worker = WorkerConfig.defaults();
        checkAffinityNames(o, count, o.queues());
        // One pool for every device: queue pairs join its workers when their front-end starts them.
        WorkerPool pool = WorkerPool.configured(o.queueAffinity(), worker);
        Recording recording = o.has(Options.JFR) ? FlightRecording.start(Path.of(o.string(Options.JFR, ""))) : null;
        List<Device> devices = new ArrayList<>();
        HTTPServer metrics = null;
        try {
            for (int i = 0; i < count; i++) {
                int fd = activated.length > 0 ? activated[i] : o.has(Options.FD) ? o.integer(Options.FD, -1, 0, Integer.MAX_VALUE) : -1;
                devices.add(open(o, i, inherited ? null : sockets.get(i), fd, i < taps.size() ? taps.get(i) : "jvhost%d",
                        client, worker, features, pool));
            }
            if (o.has(Options.METRICS)) {
                List<Supplier<DeviceSample>> samplers = new ArrayList<>();
                for (Device d : devices) {
                    samplers.add(d::sample);
                }
                metrics = JvhostMetrics.serve(o.string(Options.METRICS, ""), samplers, pool::stats);
                LOG.log(Level.INFO, "jvhost: Prometheus metrics on http://{0}:{1}/metrics",
                        o.string(Options.METRICS, "").replaceAll(":[0-9]+$", ""), metrics.getPort());
            }
        } catch (IOException e) {
            closeAll(devices, null, recording);
            pool.close();
            throw new IllegalArgumentException("--metrics=" + o.string(Options.METRICS, "") + ": cannot listen ("
                    + e.getMessage() + "): is another process using that port?", e);
        } catch (RuntimeException e) {
            closeAll(devices, metrics, recording);
            pool.close();
            throw e;
        }
        CountDownLatch stopped = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        AtomicInteger signals = new AtomicInteger();
        StopSignals.install(() -> {
            if (signals.incrementAndGet() > 1) {
                System.exit(1); // a second signal while stopping: give up waiting (the hook below still runs)
            }
            stopped.countDown();
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopped.countDown();
            try {
                if (done.await(5, TimeUnit.SECONDS)) {
                    // A clean stop on SIGTERM/SIGINT is a success: exit 0, not the JVM's 128+signal.
                    System.err.flush();
                    Runtime.getRuntime().halt(0);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "jvhost-shutdown"));
        // After the stop handlers: this line says the process is up and stops cleanly on SIGTERM.
        LOG.log(Level.INFO, "jvhost: {0} device(s), up to {1} worker thread(s){2}", count, pool.size(),
                pool.settings().cpus().length == 0 ? "" : " pinned to CPUs " + CpuList.format(pool.settings().cpus()));
        if (Systemd.notify("READY=1\nSTATUS=serving " + count + " device(s)\nMAINPID=" + ProcessHandle.current().pid())) {
            LOG.log(Level.DEBUG, "jvhost: READY=1 sent to NOTIFY_SOCKET");
        }
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            Systemd.notify("STOPPING=1");
            LOG.log(Level.INFO, "jvhost: stopping");
            StringBuilder summary = new StringBuilder("jvhost: stopped\n");
            closeAll(devices, metrics, recording);
            for (Device d : devices) {
                summary.append(StatsRenderer.table(d.device().stats()));
            }
            summary.append(StatsRenderer.workers(pool.stats()));
            pool.close();
            System.err.print(summary);
            done.countDown();
        }
        return 0;
    }

    private static void closeAll(List<Device> devices, HTTPServer metrics, Recording recording) {
        if (metrics != null) {
            metrics.close();
        }
        devices.forEach(Device::close);
        if (recording != null) {
            try {
                recording.stop();
                LOG.log(Level.INFO, "jvhost: flight recording written to {0}", recording.getDestination());
            } catch (IllegalStateException e) {
                LOG.log(Level.WARNING, "jvhost: flight recording not written ({0}): the JVM stopped it first;"
                        + " stop jvhost with SIGTERM or SIGINT", e.getMessage());
            }
            recording.close();
        }
    }

    /** Every device a {@code --queue-affinity} names must exist (a typo would otherwise place nothing). */
    private static void checkAffinityNames(Options o, int devices, int queuePairs) {
        for (String key : o.queueAffinity().keySet()) {
            int colon = key.lastIndexOf(':');
            String dev = key.substring(0, colon);
            int q = Integer.parseInt(key.substring(colon + 1));
            boolean known = false;
            for (int i = 0; i < devices; i++) {
                known |= dev.equals(deviceName(i));
            }
            if (!known || q >= queuePairs) {
                throw new IllegalArgumentException("--queue-affinity names " + key + ", but the devices are vm0..vm"
                        + (devices - 1) + " with queue pairs 0.." + (queuePairs - 1));
            }
        }
    }

    private static String deviceName(int index) {
        return "vm" + index;
    }

    private static Device open(Options o, int index, String socketPath, int fd, String tap, boolean client,
                               WorkerConfig worker, FeatureSet features, WorkerPool pool) {
        String name = deviceName(index);
        LogLineFormatter.knownDevice(name);
        NetDevice.Config cfg = NetDevice.Config.of(name, tap, o.queues()).withMtu(o.mtu()).withWorker(worker)
                .withPool(pool);
        if (o.tapSndBuf() > 0) {
            cfg = cfg.withTapSndBuf(o.tapSndBuf());
        }
        byte[] mac = o.mac(index);
        if (mac != null) {
            cfg = cfg.withMac(mac);
        }
        if (o.has(Options.CAPTURE)) {
            String file = o.string(Options.CAPTURE, "");
            cfg = cfg.withCapture(Path.of(index == 0 ? file : file + "." + index));
        }
        String journal = o.string(Options.RING_JOURNAL, socketPath == null ? null : socketPath + ".rings");
        if (journal != null && !journal.equals(Options.RING_JOURNAL_NONE)) {
            cfg = cfg.withRingJournal(Path.of(index > 0 && o.has(Options.RING_JOURNAL) ? journal + "." + index : journal));
        }
        NetDevice device = new NetDevice(cfg);
        AutoCloseable endpoint = null;
        try {
            if (client) {
                endpoint = VhostUserClientMode.connect(name, socketPath, device, features);
            } else if (socketPath == null) {
                endpoint = VhostUserServer.inherit(name, fd, device, features);
            } else {
                endpoint = VhostUserServer.listen(name, socketPath, device, features);
            }
            String statsPath = o.string(Options.STATS_PATH, socketPath == null ? null : socketPath + ".stats");
            if (statsPath != null && index > 0 && o.has(Options.STATS_PATH)) {
                statsPath = statsPath + "." + index;
            }
            StatsEndpoint stats = statsPath == null ? null : StatsEndpoint.start(statsPath, device);
            LOG.log(Level.INFO, "{0}: {1} {2}, tap {3}, {4} queue pair(s){5}", name, client ? "client of" : "serving",
                    socketPath != null ? socketPath : "fd " + fd, device.tap().ifName(), o.queues(),
                    stats == null ? "" : ", stats on " + statsPath);
            return new Device(device, endpoint, stats, features);
        } catch (RuntimeException e) {
            closeQuietly(endpoint);
            device.close();
            throw e;
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            LOG.log(Level.WARNING, "jvhost: while stopping: {0}", e.toString());
        }
    }
}
