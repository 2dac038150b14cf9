package io.jvhost.bench.e2e;

/**
 * A back-end under test, with whatever front-end drives it. The harness charges CPU time to the
 * process {@link #start} returns (the back-end), counts frames at the tap, and stops every process
 * the contender started through {@link Run#procs()} when the run ends.
 */
interface Contender {
    /** The rings its front-end asks for (split for contenders without a virtio front-end). */
    default io.jvhost.driver.RingOptions rings() {
        return io.jvhost.driver.RingOptions.SPLIT;
    }

    /** Name in the results ("jvhost", "dpdk", "c-limit"). */
    String name();

    /** Null when the scenario can run, else the reason it cannot (printed in RESULTS.md). */
    String unsupported(Scenario s);

    /**
     * Starts the back-end (inside {@code run.ns()}, pinned to {@code run.backendCpus()}) and its
     * front-end; returns the back-end process. The tap is configured by the harness afterwards.
     */
    Process start(Run run) throws Exception;
}
