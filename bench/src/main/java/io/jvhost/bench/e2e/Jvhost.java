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
            String out = Procs.run(600, launcher.toString(), "--print-capabilities");
            return out.contains("\"net\"") ? null
                    : "pending integration: main's jvhost has no vhost-user-net back-end yet (--print-capabilities: "
                      + out.strip().lines().reduce((a, b) -> b).orElse("") + ")";
        } catch (Exception e) {
            return "pending integration: " + e.getMessage().lines().findFirst().orElse("");
        }
    }

    static final class Backend implements VhostContender.Backend {
        private final Path launcher;
        private final int busyPollUs;
        private final String unavailable;

        Backend(Path launcher, int busyPollUs, String unavailable) {
            this.launcher = launcher;
            this.busyPollUs = busyPollUs;
            this.unavailable = unavailable;
        }

        @Override
        public String name() {
            return busyPollUs > 0 ? "jvhost-bp" + busyPollUs : "jvhost";
        }

        @Override
        public String unsupported(Scenario s) {
            return unavailable;
        }

        @Override
        public Process start(Run run) throws Exception {
            List<String> cmd = new ArrayList<>(List.of(launcher.toString(), "--socket-path=" + run.socket(),
                    "--tap=" + run.ns().tap));
            if (busyPollUs > 0) {
                cmd.add("--busy-poll-us=" + busyPollUs);
            }
            return run.procs().start("backend", run.ns().exec(run.backendCpus(), cmd));
        }
    }

    /**
     * The Java driver (io.jvhost.driver) as front-end: needed for 64 KiB GSO TX and for RX in
     * blocking (call-eventfd) mode. Plugs in here once the driver's vhost-user client is on main.
     */
    static final class DriverFrontEnd implements VhostContender.FrontEnd {
        @Override
        public String name() {
            return "java driver";
        }

        @Override
        public String unsupported(Scenario s) {
            return "pending: Java driver front-end not wired into the harness yet";
        }

        @Override
        public Process start(Run run) {
            throw new UnsupportedOperationException(unsupported(run.scenario()));
        }
    }
}
