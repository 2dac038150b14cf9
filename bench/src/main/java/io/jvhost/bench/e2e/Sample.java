package io.jvhost.bench.e2e;

import org.HdrHistogram.Histogram;

/**
 * One measured window of one contender in one scenario. Rates are per second of wall time in the
 * window; {@code cpuSecPerMpkt} is the back-end's utime+stime over the window per million packets
 * (per million round trips for RR). {@code offeredPps} is what the generator offered (RX only:
 * frames the kernel sent to the tap, delivered or dropped). For RX, {@code pps} (and gbps, CPU s/Mpkt)
 * counts the frames the guest received when the front-end counts them (the Java driver), else the
 * frames the back-end read from the tap; {@code tapReadPps} (RX only, else NaN) is always the latter:
 * a back-end that reads the tap and then finds no guest buffer drops the frame after the tap
 * counted it. {@code error} is non-null when the run failed; its rates are then NaN.
 */
record Sample(Scenario scenario, String contender, int repeat, double pps, double gbps, double cpuSecPerMpkt,
              double backendCpuPct, double offeredPps, double tapReadPps, long lost, Histogram rtt, String error) {

    static Sample failed(Scenario s, String contender, int repeat, String error) {
        return new Sample(s, contender, repeat, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN,
                0, null, error);
    }

    boolean ok() {
        return error == null;
    }
}
