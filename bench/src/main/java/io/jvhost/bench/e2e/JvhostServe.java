package io.jvhost.bench.e2e;

import io.jvhost.engine.WorkerConfig;
import io.jvhost.device.NetDevice;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserServer;
import java.util.concurrent.CountDownLatch;

/**
 * Interim launcher for the jvhost contender while {@code tools/jvhost} does not yet start a
 * back-end: the same pieces the CLI will wire ({@link NetDevice} on a tap, {@link VhostUserServer}
 * on a socket, all features offered), one queue pair, serving until SIGTERM.
 * <pre>JvhostServe --socket-path=SOCK --tap=TAP [--busy-poll-us=N]</pre>
 * The harness prefers {@code tools/jvhost} as soon as it answers {@code --print-capabilities}.
 */
public final class JvhostServe {
    private JvhostServe() {
    }

    public static void main(String[] args) throws InterruptedException {
        String socket = null;
        String tap = null;
        long busyPollUs = 0;
        for (String a : args) {
            if (a.startsWith("--socket-path=")) {
                socket = a.substring(14);
            } else if (a.startsWith("--tap=")) {
                tap = a.substring(6);
            } else if (a.startsWith("--busy-poll-us=")) {
                busyPollUs = Long.parseLong(a.substring(15));
            } else {
                throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        if (socket == null || tap == null) {
            throw new IllegalArgumentException("usage: JvhostServe --socket-path=SOCK --tap=TAP [--busy-poll-us=N]");
        }
        WorkerConfig worker = WorkerConfig.defaults().withBusyPollNanos(busyPollUs * 1000);
        NetDevice device = new NetDevice(NetDevice.Config.of("bench", tap, 1).withWorker(worker));
        VhostUserServer server = VhostUserServer.listen("bench", socket, device, FeatureSet.all());
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.close();
            device.close();
            done.countDown();
        }, "jvhost-serve-stop"));
        System.out.println("jvhost (bench launcher): serving " + socket + " on tap " + tap);
        done.await();
    }
}
