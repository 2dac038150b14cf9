package io.jvhost.virtq;

import io.jvhost.engine.Worker;

/**
 * A deliberate back-edge (the ring layer using a worker) for {@code ArchitectureTest}: it shows the
 * layering and cycle rules fail when such a dependency appears. Test code only, never imported
 * with the production classes.
 */
public final class ArchBackEdgeFixture {
    private ArchBackEdgeFixture() {
    }

    static String workerName(Worker w) {
        return w.name();
    }
}
