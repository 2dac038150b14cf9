package io.jvhost.cli;

import io.jvhost.engine.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.nativ.NativeException;
import io.jvhost.net.NetDevice;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserClientMode;
import io.jvhost.vhostuser.VhostUserServer;

import java.nio.file.Path;
import java.util.Arrays;
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
            if ("demo".equals(cmd)) {
                String[] rest = Arrays.copyOfRange(args, 1, args.length);
                return io.jvhost.demo.Demo.run(rest);
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

    private static int serve(Options o) throws IllegalArgumentException {
        FeatureSet features = FeatureSet.all();
        for (String f : o.disabledFeatures()) {
            features = features.without(f);
        }
        String socketPath = o.string(Options.SOCKET_PATH, null);
        boolean client = o.flag(Options.CLIENT);
        if (client && socketPath == null) {
            throw new IllegalArgumentException("--client needs --socket-path=PATH of the front-end's socket");
        }
        String tap = o.string(Options.TAP, "jvhost%d");
        String name = "vm0";
        WorkerConfig worker = WorkerConfig.defaults().withBusyPollNanos(o.busyPollMicros() * 1000L);
        NetDevice.Config cfg = NetDevice.Config.of(name, tap, o.queues()).withMtu(o.mtu()).withWorker(worker);
        if (o.tapSndBuf() > 0) {
            cfg = cfg.withTapSndBuf(o.tapSndBuf());
        }
        byte[] mac = o.mac();
        if (mac != null) {
            cfg = cfg.withMac(mac);
        }
        if (o.has(Options.CAPTURE)) {
            cfg = cfg.withCapture(Path.of(o.string(Options.CAPTURE, "")));
        }
        NetDevice device = new NetDevice(cfg);
        AutoCloseable endpoint;
        StatsEndpoint stats = null;
        try {
            if (client) {
                endpoint = VhostUserClientMode.connect(name, socketPath, device, features);
            } else if (o.has(Options.FD)) {
                endpoint = VhostUserServer.inherit(name, o.integer(Options.FD, -1, 0, Integer.MAX_VALUE), device, features);
            } else if (socketPath != null) {
                endpoint = VhostUserServer.listen(name, socketPath, device, features);
            } else {
                throw new IllegalArgumentException("give --socket-path=PATH or --fd=N");
            }
            if (socketPath != null) {
                stats = StatsEndpoint.start(socketPath + ".stats", device);
            }
        } catch (RuntimeException e) {
            device.close();
            throw e;
        }
        System.err.printf("jvhost: %s on %s, tap %s, %d queue pair(s)%n", client ? "client of" : "serving",
                socketPath != null ? socketPath : "fd " + o.string(Options.FD, "?"), device.tap().ifName(), o.queues());
        CountDownLatch stopped = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        AutoCloseable ep = endpoint;
        StatsEndpoint st = stats;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopped.countDown();
            try {
                if (done.await(2, TimeUnit.SECONDS)) {
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
            closeQuietly(st);
            closeQuietly(ep);
            device.close();
            System.err.println("jvhost: stopped\n" + StatsRenderer.table(device.stats()));
            done.countDown();
        }
        return 0;
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
