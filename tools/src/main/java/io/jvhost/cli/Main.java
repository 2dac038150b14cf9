package io.jvhost.cli;

import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.engine.WorkerPool;
import io.jvhost.nativ.NativeException;
import io.jvhost.device.NetDevice;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserClientMode;
import io.jvhost.vhostuser.VhostUserServer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Entry point of the {@code jvhost} command: the demo (default), a vhost-user-net back-end, or
 * the {@code stats} client. Exit codes: 0 success, 1 runtime failure, 2 bad command line.
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    static int run(String[] args) {
        PlainNumbersFormatter.install();
        if (args.length > 0 && "demo".equals(args[0])) {
            // The demo has its own options (e.g. --seconds N).
            return io.jvhost.demo.Demo.run(Arrays.copyOfRange(args, 1, args.length));
        }
        Options o;
        try {
            o = Options.parse(args);
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
            if (cmd == null && !o.has(Options.SOCKET_PATH) && !o.has(Options.FD)) {
                return io.jvhost.demo.Demo.run(new String[0]);
            }
            if ("stats".equals(cmd)) {
                return StatsEndpoint.query(statsPath(o), o.positional().contains("json"));
            }
            if (cmd != null) {
                System.err.println("jvhost: unknown command '" + cmd + "'\n" + Options.usage());
                return 2;
            }
            return serve(o);
        } catch (IllegalArgumentException e) {
            System.err.println("jvhost: " + e.getMessage());
            return 2;
        } catch (NativeException e) {
            System.err.println("jvhost: " + e.getMessage());
            return 1;
        }
    }

    private static String statsPath(Options o) {
        String sock = o.string(Options.SOCKET_PATH, null);
        if (sock == null) {
            throw new IllegalArgumentException("stats needs --socket-path=PATH of the running back-end");
        }
        return sock + ".stats";
    }

    /** One device: its back-end, its vhost-user endpoint and its stats socket. */
    private record Device(NetDevice device, AutoCloseable endpoint, StatsEndpoint stats) {
        void close() {
            closeQuietly(stats);
            closeQuietly(endpoint);
            device.close();
        }
    }

    private static int serve(Options o) {
        FeatureSet features = FeatureSet.all();
        for (String f : o.disabledFeatures()) {
            features = features.without(f);
        }
        List<String> sockets = o.strings(Options.SOCKET_PATH);
        List<String> taps = o.strings(Options.TAP);
        boolean client = o.flag(Options.CLIENT);
        boolean inherited = o.has(Options.FD);
        if (client && sockets.isEmpty()) {
            throw new IllegalArgumentException("--client needs --socket-path=PATH of the front-end's socket");
        }
        if (inherited && !sockets.isEmpty()) {
            throw new IllegalArgumentException("give either --fd=N or --socket-path=PATH, not both");
        }
        if (taps.size() > Math.max(1, sockets.size())) {
            throw new IllegalArgumentException("more --tap than devices (one device per --socket-path)");
        }
        int count = inherited ? 1 : sockets.size();
        WorkerConfig worker = WorkerConfig.defaults();
        // One pool for every device: queue pairs join its workers when their front-end starts them.
        WorkerPool pool = WorkerPool.configured(o.queueAffinity(), worker);
        List<Device> devices = new ArrayList<>();
        try {
            checkAffinityNames(o, count, o.queues());
            for (int i = 0; i < count; i++) {
                devices.add(open(o, i, inherited ? null : sockets.get(i), i < taps.size() ? taps.get(i) : "jvhost%d",
                        client, worker, features, pool));
            }
        } catch (RuntimeException e) {
            devices.forEach(Device::close);
            pool.close();
            throw e;
        }
        System.err.printf("jvhost: %d device(s), up to %d worker thread(s)%s%n", count, pool.size(),
                pool.settings().cpus().length == 0 ? "" : " pinned to CPUs "
                        + io.jvhost.config.CpuList.format(pool.settings().cpus()));
        CountDownLatch stopped = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
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
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            StringBuilder summary = new StringBuilder("jvhost: stopped\n");
            for (Device d : devices) {
                d.close();
                summary.append(StatsRenderer.table(d.device().stats()));
            }
            summary.append(StatsRenderer.workers(pool.stats()));
            pool.close();
            System.err.print(summary);
            done.countDown();
        }
        return 0;
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

    private static Device open(Options o, int index, String socketPath, String tap, boolean client,
                               WorkerConfig worker, FeatureSet features, WorkerPool pool) {
        String name = deviceName(index);
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
        NetDevice device = new NetDevice(cfg);
        AutoCloseable endpoint = null;
        try {
            if (client) {
                endpoint = VhostUserClientMode.connect(name, socketPath, device, features);
            } else if (socketPath == null) {
                endpoint = VhostUserServer.inherit(name, o.integer(Options.FD, -1, 0, Integer.MAX_VALUE), device, features);
            } else {
                endpoint = VhostUserServer.listen(name, socketPath, device, features);
            }
            StatsEndpoint stats = socketPath == null ? null : StatsEndpoint.start(socketPath + ".stats", device);
            System.err.printf("jvhost: %s: %s %s, tap %s, %d queue pair(s)%n", name, client ? "client of" : "serving",
                    socketPath != null ? socketPath : "fd " + o.string(Options.FD, "?"), device.tap().ifName(), o.queues());
            return new Device(device, endpoint, stats);
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
            System.err.println("jvhost: while stopping: " + e);
        }
    }
}
