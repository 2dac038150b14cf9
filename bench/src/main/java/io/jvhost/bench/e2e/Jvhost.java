package io.jvhost.bench.e2e;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * jvhost as a back-end contender: {@code tools/jvhost --socket-path=SOCK --tap=TAP
 * [--busy-poll-us=N]}, the whole JVM pinned to the back-end CPU (JIT and GC threads included:
 * they are part of what jvhost costs).
 */
final class Jvhost {
    private Jvhost() {
    }

    /**
     * Null when {@code launcher} is a jvhost that can serve vhost-user-net, else why not. Asks it
     * for {@code --print-capabilities} (the vhost-user back-end convention), which a back-end
     * answers with {@code {"type": "net", ...}}.
     */
    static String probe(Path launcher) {
        if (!Files.isExecutable(launcher)) {
            return "pending integration: " + launcher + " not found";
        }
        try {
            // The launcher builds on first use; its build output comes first, with colour codes.
            String out = Procs.run(600, launcher.toString(), "--print-capabilities").replaceAll("\u001B\\[[;\\d]*m", "");
            return out.contains("\"net\"") ? null
                    : "pending integration: main's jvhost has no vhost-user-net back-end yet (--print-capabilities: "
                      + out.strip().lines().reduce((a, b) -> b).orElse("") + ")";
        } catch (Exception e) {
            return "pending integration: " + e.getMessage().lines().findFirst().orElse("");
        }
    }

    /**
     * The interim launcher: this JVM's java and class path running {@link JvhostServe}, with the
     * flags tools/jvhost uses. Used while {@code tools/jvhost} cannot start a back-end yet.
     */
    static List<String> interimLauncher() {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-XX:+UseZGC", "-cp", System.getProperty("java.class.path"),
                JvhostServe.class.getName());
    }

    static final class Backend implements VhostContender.Backend {
        private final List<String> launcher;
        private final int busyPollUs;
        private final String unavailable;
        /** JVM options of the "jvhost-alt" contender (an A/B variant of jvhost), else null. */
        private final String altJavaOpts;

        /** {@code launcher}: the command before the options (tools/jvhost, or {@link #interimLauncher()}). */
        Backend(List<String> launcher, int busyPollUs, String unavailable) {
            this(launcher, busyPollUs, unavailable, null);
        }

        Backend(List<String> launcher, int busyPollUs, String unavailable, String altJavaOpts) {
            this.launcher = launcher;
            this.busyPollUs = busyPollUs;
            this.unavailable = unavailable;
            this.altJavaOpts = altJavaOpts;
        }

        @Override
        public String name() {
            return altJavaOpts != null ? "jvhost-alt" : busyPollUs > 0 ? "jvhost-bp" : "jvhost";
        }

        @Override
        public String unsupported(Scenario s) {
            return unavailable;
        }

        @Override
        public Process start(Run run) throws Exception {
            List<String> cmd = new ArrayList<>();
            if (altJavaOpts != null) {
                cmd.addAll(List.of("env", "JVHOST_JAVA_OPTS=" + altJavaOpts));
            }
            cmd.addAll(launcher);
            cmd.addAll(List.of("--socket-path=" + run.socket(), "--tap=" + run.ns().tap));
            if (busyPollUs > 0) {
                cmd.add("--busy-poll-us=" + busyPollUs);
            }
            return run.procs().start("backend", run.ns().exec(run.backendCpus(), cmd));
        }
    }

    /**
     * The Java driver (io.jvhost.driver) as front-end, in its own JVM ({@link DriverFront}) pinned to
     * the front-end CPU: TX (also 64 KiB GSO frames, which testpmd cannot build), RX sleeping on the
     * call eventfd (blocking, as the issue asks for RX on two cores), RR answering ICMP echo.
     */
    static final class DriverFrontEnd implements VhostContender.FrontEnd {
        /**
         * 64 KiB GSO frames in flight at most: 16 = 1 MiB, what Linux's TCP small queues let one
         * flow keep below the qdisc (tcp_limit_output_bytes), so the guest's TX buffers stay as
         * few and cache-warm as a real sender's, as tap_write's one buffer is (env
         * E2E_GSO_TX_WINDOW; the ring size lifts the cap).
         */
        static final int GSO_TX_WINDOW = Integer.parseInt(System.getenv().getOrDefault("E2E_GSO_TX_WINDOW", "16"));

        @Override
        public String name() {
            return "Java driver";
        }

        @Override
        public String unsupported(Scenario s) {
            return null;
        }

        @Override
        public Process start(Run run) throws Exception {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-cp", System.getProperty("java.class.path"),
                    DriverFront.class.getName(), "--socket-path=" + run.socket(), "--size=" + run.scenario().frameSize,
                    "--ring=" + Dpdk.QUEUE_SIZE, "--rings=" + run.rings().id()));
            switch (run.scenario().kind) {
                case TX -> cmd.add("--mode=tx");
                case TX_GSO -> cmd.addAll(List.of("--mode=tx", "--gso", "--tx-window=" + GSO_TX_WINDOW));
                case TX_USO -> cmd.addAll(List.of("--mode=tx", "--uso", "--tx-window=" + GSO_TX_WINDOW));
                case TX_DGRAM -> cmd.addAll(List.of("--mode=tx", "--to-host"));
                case RX -> cmd.addAll(List.of("--mode=rx", "--count-file=" + run.dir().resolve(Measure.GUEST_COUNT_FILE)));
                case RR -> cmd.add("--mode=echo");
            }
            return run.procs().start("frontend", run.ns().exec(run.frontendCpus(), cmd));
        }
    }
}
