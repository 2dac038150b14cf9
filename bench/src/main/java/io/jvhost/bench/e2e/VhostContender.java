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

    String frontEndName() {
        return frontEnd.name();
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
