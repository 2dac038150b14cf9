package io.jvhost.bench.e2e;

import io.jvhost.driver.RingOptions;
import io.jvhost.driver.VhostUserClient;
import java.nio.file.Files;

/**
 * A vhost-user back-end (jvhost or DPDK's net_vhost) driven by a front-end over the run's unix
 * socket, with the rings the front-end asks for ({@code --rings}: split, packed, split-inorder,
 * packed-inorder). The back-end is started first (it is the socket server), the front-end once the
 * socket exists. For other rings than split the harness first asks the back-end for its features
 * (GET_FEATURES on a connection of its own): a back-end that does not offer packed rings or
 * IN_ORDER is reported as not supporting them instead of being measured with whatever a front-end
 * would fall back to (testpmd's virtio-user silently runs split rings then).
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
    private final RingOptions rings;
    /** Why the back-end cannot run {@link #rings}, once a start found out; else null. */
    private volatile String ringsUnsupported;

    VhostContender(Backend backend, FrontEnd frontEnd) {
        this(backend, frontEnd, RingOptions.SPLIT);
    }

    VhostContender(Backend backend, FrontEnd frontEnd, RingOptions rings) {
        this.backend = backend;
        this.frontEnd = frontEnd;
        this.rings = rings;
    }

    /** The back-end's name, with {@code +rings} unless the rings are split (e.g. {@code dpdk+packed-inorder}). */
    @Override
    public String name() {
        return rings.equals(RingOptions.SPLIT) ? backend.name() : backend.name() + "+" + rings.id();
    }

    @Override
    public RingOptions rings() {
        return rings;
    }

    String frontEndName(Scenario s) {
        return frontEnd instanceof AutoFrontEnd a ? a.pick(s).name() : frontEnd.name();
    }

    @Override
    public String unsupported(Scenario s) {
        String b = backend.unsupported(s);
        if (b == null) {
            b = ringsUnsupported;
        }
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
        if (!rings.equals(RingOptions.SPLIT)) {
            checkRingsOffered(run);
        }
        frontEnd.start(run);
        return be;
    }

    /** GET_FEATURES from the back-end; throws (and remembers why) when it lacks the ring bits asked for. */
    private void checkRingsOffered(Run run) {
        long offered;
        long end = System.nanoTime() + 30_000_000_000L;
        while (true) {
            try (VhostUserClient probe = VhostUserClient.connect(run.socket().toString())) {
                offered = probe.getFeatures();
                break;
            } catch (RuntimeException e) {
                // the socket file may exist a moment before the back-end accepts on it
                if (System.nanoTime() > end) {
                    throw new IllegalStateException(backend.name() + ": no answer to GET_FEATURES: " + e.getMessage(), e);
                }
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        String missing = RingOptions.missingBits(rings.features(), offered);
        if (missing != null) {
            ringsUnsupported = "n/a: " + backend.name() + " does not offer " + missing + ", which " + rings.id()
                    + " rings need (GET_FEATURES: 0x" + Long.toHexString(offered) + ")";
            throw new IllegalStateException(ringsUnsupported);
        }
    }
}
