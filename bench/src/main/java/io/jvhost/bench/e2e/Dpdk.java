package io.jvhost.bench.e2e;

import io.jvhost.driver.RingOptions;
import io.jvhost.virtq.RingLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * DPDK 22.11 testpmd in its two roles. Both run without hugepages ({@code --no-huge -m 1024}, the
 * memory is shared with the peer over the vhost-user socket as fds) and without PCI, with
 * {@code --total-num-mbufs=16384}. testpmd's main lcore (0) and its one forwarding lcore (1) are
 * both mapped onto the same CPU with {@code --lcores=0@N,1@N}: the main lcore only sleeps and
 * prints statistics once a second ({@code --stats-period=1}, which also keeps a non-interactive
 * testpmd running until SIGTERM), the forwarding lcore spins.
 */
final class Dpdk {
    private Dpdk() {
    }

    static final String TESTPMD = "dpdk-testpmd";

    /**
     * virtio-user ring size. 1024 rather than QEMU's default 256: on a shared two-core machine the
     * spinning front-end and back-end are descheduled at different times, and a deeper ring rides
     * out those gaps for every back-end alike (set per run with -De2e.queueSize=N).
     */
    static final int QUEUE_SIZE = Integer.getInteger("e2e.queueSize", 1024);

    static List<String> eal(String cpu, String filePrefix) {
        List<String> cmd = new ArrayList<>(List.of(TESTPMD, "--lcores=0@" + cpu + ",1@" + cpu, "--no-huge", "-m", "1024",
                "--no-pci", "--file-prefix=" + filePrefix));
        // For diagnosis, e.g. E2E_DPDK_EAL_EXTRA="--log-level=lib.vhost.data:debug" (not used in measured runs).
        String extra = System.getenv("E2E_DPDK_EAL_EXTRA");
        if (extra != null && !extra.isBlank()) {
            cmd.addAll(List.of(extra.strip().split("\\s+")));
        }
        return cmd;
    }

    static List<String> app(String forwardMode) {
        return List.of("--", "--forward-mode=" + forwardMode, "--total-num-mbufs=16384", "--stats-period=1");
    }

    /**
     * The front-end's vdev: the rings always explicit ({@code packed_vq}, {@code in_order}), since
     * DPDK 22.11's virtio-user defaults to {@code in_order=1}.
     */
    static String virtioUserVdev(String socket, RingOptions rings) {
        return "net_virtio_user0,path=" + socket + ",queues=1,queue_size=" + QUEUE_SIZE + ",mac=" + NetNs.GUEST_MAC
                + ",packed_vq=" + (rings.layout() == RingLayout.PACKED ? 1 : 0) + ",in_order=" + (rings.inOrder() ? 1 : 0);
    }

    /** The back-end: {@code net_vhost} (socket server) + {@code net_tap}, io forwarding between them. */
    static final class Backend implements VhostContender.Backend {
        @Override
        public String name() {
            return "dpdk";
        }

        @Override
        public String unsupported(Scenario s) {
            return s.kind == Scenario.Kind.TX_GSO || s.kind == Scenario.Kind.TX_USO
                    ? "n/a: DPDK's tap PMD opens the tap without IFF_VNET_HDR, so no GSO/TSO/USO frame can pass" : null;
        }

        @Override
        public Process start(Run run) throws Exception {
            List<String> cmd = eal(run.backendCpus(), NetNs.PREFIX + "-" + run.tag() + "-be");
            cmd.addAll(List.of("--vdev", "net_vhost0,iface=" + run.socket(), "--vdev", "net_tap0,iface=" + run.ns().tap));
            cmd.addAll(app("io"));
            return run.procs().start("backend", run.ns().exec(run.backendCpus(), cmd));
        }
    }

    /**
     * The front-end: {@code net_virtio_user} connecting to the socket. TX: txonly with
     * {@code --txpkts=<frame size>} (one segment of exactly that many bytes, UDP 198.18.0.1 →
     * 198.18.0.2 to MAC 02:00:00:00:00:00); RX: rxonly; RR: icmpecho with the port MAC set to the
     * guest MAC the namespace's neighbour entry points at. The run's rings as {@code packed_vq=0|1}
     * and {@code in_order=0|1}, both always given.
     */
    static final class FrontEnd implements VhostContender.FrontEnd {
        @Override
        public String name() {
            return "testpmd virtio-user";
        }

        @Override
        public String unsupported(Scenario s) {
            return switch (s.kind) {
                case TX_GSO, TX_USO -> "pending: needs the Java driver front-end (testpmd txonly cannot build GSO frames)";
                case TX_DGRAM -> "n/a: compared with USO from the same front-end, the Java driver";
                default -> null;
            };
        }

        @Override
        public Process start(Run run) throws Exception {
            List<String> cmd = eal(run.frontendCpus(), NetNs.PREFIX + "-" + run.tag() + "-fe");
            cmd.addAll(List.of("--vdev", virtioUserVdev(run.socket().toString(), run.rings())));
            Scenario s = run.scenario();
            switch (s.kind) {
                case TX, TX_GSO, TX_USO, TX_DGRAM -> {
                    cmd.addAll(app("txonly"));
                    cmd.add("--txpkts=" + s.frameSize);
                }
                case RX -> cmd.addAll(app("rxonly"));
                case RR -> cmd.addAll(app("icmpecho"));
            }
            // Inside the namespace too (it needs no network there): the namespace's pid list is
            // then the complete list of this run's processes, which run-e2e's EXIT trap relies on.
            return run.procs().start("frontend", run.ns().exec(run.frontendCpus(), cmd));
        }
    }
}
