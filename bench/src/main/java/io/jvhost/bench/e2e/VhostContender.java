package io.jvhost.bench.e2e;

import java.nio.file.Files;

/**
 * A vhost-user back-end (jvhost or DPDK's net_vhost) driven by a front-end over the run's unix
 * socket. The back-end is started first (it is the socket server), the front-end once the socket
 * exists.
 */
final class VhostContender implements Contender {
    /** The back-end half: a process serving vhost-user on a socket and owning the tap. */
    interface Backend {
        String name();

        /** Null when supported, else why not. */
        String unsupported(Scenario s);

        Process start(Run run) throws Exception;
    }

    /** The front-end ("guest") half: connects to the socket and sends, receives or echoes frames. */
    interface FrontEnd {
        String name();

        String unsupported(Scenario s);

        Process start(Run run) throws Exception;
    }

    /**
     * The default front-end choice: testpmd virtio-user wherever it can (so the front-end is not
     * ours alone), the Java driver where it cannot (64 KiB GSO TX). The issue asks for the Java
     * driver in blocking mode as the RX front-end of both back-ends, but DPDK's vhost back-end
     * drops every frame towards the Java driver's RX ring (seen here: testpmd TX-dropped = RX), so
     * RX stays on testpmd until that is understood; {@code --frontend java-driver} runs it anyway.
     */
    static final class AutoFrontEnd implements FrontEnd {
        private final FrontEnd primary;
        private final FrontEnd fallback;

        AutoFrontEnd(FrontEnd primary, FrontEnd fallback) {
            this.primary = primary;
            this.fallback = fallback;
        }

        FrontEnd pick(Scenario s) {
            return primary.unsupported(s) == null ? primary : fallback;
        }

        @Override
        public String name() {
            return primary.name() + ", else " + fallback.name();
        }

        @Override
        public String unsupported(Scenario s) {
            return pick(s).unsupported(s);
        }

        @Override
        public Process start(Run run) throws Exception {
            return pick(run.scenario()).start(run);
        }
    }

    private final Backend backend;
    private final FrontEnd frontEnd;

    VhostContender(Backend backend, FrontEnd frontEnd) {
        this.backend = backend;
        this.frontEnd = frontEnd;
    }

    @Override
    public String name() {
        return backend.name();
    }

    String frontEndName(Scenario s) {
        return frontEnd instanceof AutoFrontEnd a ? a.pick(s).name() : frontEnd.name();
    }

    @Override
    public String unsupported(Scenario s) {
        String b = backend.unsupported(s);
        return b != null ? b : frontEnd.unsupported(s);
    }

    @Override
    public Process start(Run run) throws Exception {
        Process be = backend.start(run);
        long end = System.nanoTime() + 60_000_000_000L;
        while (!Files.exists(run.socket())) {
            if (!be.isAlive() || System.nanoTime() > end) {
                throw new IllegalStateException(backend.name() + " did not create " + run.socket()
                        + (be.isAlive() ? " within 60 s" : " (exited " + be.exitValue() + ")"));
            }
            Thread.sleep(20);
        }
        frontEnd.start(run);
        return be;
    }
}
