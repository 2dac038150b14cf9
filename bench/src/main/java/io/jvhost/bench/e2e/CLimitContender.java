package io.jvhost.bench.e2e;

import java.util.ArrayList;
import java.util.List;

/**
 * The physical limit: a C program owns the tap directly, no vhost-user, no front-end. TX: tap_write
 * (one write(2) per frame); RX: tap_read (one read(2) per frame); RR: tap_read --echo answering the
 * requester's pings. Sources in bench/e2e/c/, built by bench/run-e2e with gcc.
 */
final class CLimitContender implements Contender {
    /**
     * The reader spins on a non-blocking tap fd, as DPDK's tap PMD does: on a loaded machine a
     * blocking reader waits for its wake-up while the tap's queue overflows. -De2e.cSpin=false
     * measures the blocking reader instead.
     */
    static final String SPIN = Boolean.parseBoolean(System.getProperty("e2e.cSpin", "true")) ? "--spin" : "--block";
    @Override
    public String name() {
        return "c-limit";
    }

    @Override
    public String unsupported(Scenario s) {
        return null;
    }

    @Override
    public Process start(Run run) throws Exception {
        Scenario s = run.scenario();
        String tap = "--tap=" + run.ns().tap;
        List<String> cmd = new ArrayList<>();
        switch (s.kind) {
            case TX -> cmd.addAll(List.of(run.bin("tap_write").toString(), tap, "--size=" + s.frameSize));
            case TX_GSO -> cmd.addAll(List.of(run.bin("tap_write").toString(), tap, "--gso",
                    "--size=" + s.frameSize, "--dst-mac=" + NetNs.TAP_MAC, "--dst-ip=" + NetNs.HOST_IP,
                    "--src-ip=" + NetNs.GUEST_IP));
            case TX_USO -> cmd.addAll(List.of(run.bin("tap_write").toString(), tap, "--uso",
                    "--size=" + s.frameSize, "--dst-mac=" + NetNs.TAP_MAC, "--dst-ip=" + NetNs.HOST_IP,
                    "--src-ip=" + NetNs.GUEST_IP));
            case TX_DGRAM -> cmd.addAll(List.of(run.bin("tap_write").toString(), tap, "--size=" + s.frameSize,
                    "--dst-mac=" + NetNs.TAP_MAC, "--dst-ip=" + NetNs.HOST_IP, "--src-ip=" + NetNs.GUEST_IP));
            case RX -> cmd.addAll(List.of(run.bin("tap_read").toString(), tap, SPIN));
            case RR -> cmd.addAll(List.of(run.bin("tap_read").toString(), tap, SPIN, "--echo",
                    "--mac=" + NetNs.GUEST_MAC));
        }
        return run.procs().start("backend", run.ns().exec(run.backendCpus(), cmd));
    }
}
