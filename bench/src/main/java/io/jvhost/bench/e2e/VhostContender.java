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
     * The default front-end choice, as the issue asks: the Java driver (blocking on its call
     * eventfd) for RX, and for 64 KiB GSO TX, which testpmd cannot build; testpmd virtio-user for
     * the other scenarios (TX 64/1514, round trip), so that those front-ends are not ours alone.
     */
    static final class AutoFrontEnd implements FrontEnd {
        private final FrontEnd testpmd;
        private final FrontEnd javaDriver;

        AutoFrontEnd(FrontEnd testpmd, FrontEnd javaDriver) {
            this.testpmd = testpmd;
            this.javaDriver = javaDriver;
        }

        FrontEnd pick(Scenario s) {
            return s.kind == Scenario.Kind.RX || testpmd.unsupported(s) != null ? javaDriver : testpmd;
        }

        @Override
        public String name() {
            return javaDriver.name() + " for RX, GSO TX and UDP TX to the host, else " + testpmd.name();
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
