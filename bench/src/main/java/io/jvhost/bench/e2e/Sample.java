package io.jvhost.bench.e2e;

import org.HdrHistogram.Histogram;

/**
 * One measured window of one contender in one scenario. Rates are per second of wall time in the
 * window; {@code cpuSecPerMpkt} is the back-end's utime+stime over the window per million packets
 * (per million round trips for RR). {@code offeredPps} is what the generator offered (RX only:
 * frames the kernel sent to the tap, delivered or dropped). {@code guestPps} (RX only, NaN when the
 * front-end does not count) is what the front-end received: a back-end that reads the tap and then
 * finds no guest buffer drops the frame after the tap counted it, so only this shows what reached
 * the guest. {@code error} is non-null when the run failed; its rates are then NaN.
 */
record Sample(Scenario scenario, String contender, int repeat, double pps, double gbps, double cpuSecPerMpkt,
              double backendCpuPct, double offeredPps, double guestPps, long lost, Histogram rtt, String error) {

    static Sample failed(Scenario s, String contender, int repeat, String error) {
        return new Sample(s, contender, repeat, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN,
                0, null, error);
    }

    boolean ok() {
        return error == null;
    }
}
