package io.jvhost.it;

import java.util.function.Supplier;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The capability check every real-peer IT starts with: it skips, with the reason, where something is missing. */
public final class Peers {
    private Peers() {
    }

    /**
     * Assumes root and iproute2 (and busybox when {@code busybox}), then each peer's
     * {@code unavailableReason} in order (evaluated only once the previous checks passed: some build
     * or probe things).
     */
    @SafeVarargs
    public static void assumeAvailable(boolean busybox, Supplier<String>... unavailableReasons) {
        assumeTrue(Cmd.isRoot(), "needs root (tap, netns, peers)");
        assumeTrue(Cmd.onPath("ip"), "needs iproute2 (tools/install-deps)");
        if (busybox) {
            assumeTrue(Cmd.onPath("busybox"), "needs busybox (tools/install-deps)");
        }
        for (Supplier<String> r : unavailableReasons) {
            String why = r.get();
            assumeTrue(why == null, why);
        }
    }
}
