package io.jvhost.it;

import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.vhostuser.VhostUserMessage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The short, CI-sized version of {@code bench/run-soak}: the shipped jvhost (the launcher's memory
 * policy, plus Native Memory Tracking) serves {@value #SESSIONS} front-end sessions back to back
 * under traffic — the Java driver (ping from the host both ways, then a TX burst), every
 * {@value #TESTPMD_EVERY}th one DPDK's virtio-user (txonly) — and must give back what each session
 * took:
 * <ul>
 *   <li>its open fds, after every session, exactly what they were after the first (which may add
 *       the worker the pool starts for it and keeps);</li>
 *   <li>after warm-up (session {@value #WARMUP}) to the end, measured after a full GC each time:
 *       the live heap, the native memory that Java code allocated (NMT's "Other": FFM arenas) and
 *       the process's mappings (guest RAM, io_uring rings) flat; NMT's committed total (JIT code
 *       and metadata still settling included) within a small bound.</li>
 * </ul>
 * Nothing depends on timing: readings are taken between sessions, after jvhost logged the
 * disconnect, and the bounds are far below what one leaked object graph, buffer or mapping per
 * session would add over {@code SESSIONS - WARMUP} sessions.
 */
@Tag("privileged")
@Timeout(value = 600, unit = TimeUnit.SECONDS)
class JvhostMemoryIT {
    static final int SESSIONS = 40;
    static final int WARMUP = 10;
    static final int TESTPMD_EVERY = 5;
    private static final int TX_FRAMES = 500;
    private static final int RING = 256;
    private static final byte[] GUEST_MAC = {2, 0, 0, 0x77, 0, 2};
    /** Live heap after a full GC may move this much from warm-up to the end (JDK caches, soft references). */
    private static final long LIVE_HEAP_SLACK = 256 * 1024;
    /** FFM native allocations ("Other") may move this much: none is made per session that is not freed. */
    private static final long NMT_OTHER_SLACK_KB = 64;
    /** NMT's total may still grow this much: JIT code, compiler arenas, metaspace settling after warm-up. */
    private static final long NMT_TOTAL_SLACK_KB = 4 * 1024;
    /** Mappings the JVM itself may add (code heap, metaspace, malloc arenas); a guest RAM leak adds one per session. */
    private static final int MAPS_SLACK = 8;

    @RegisterExtension
    final Scratch scratch = new Scratch("jvm", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, JvhostProcess::unavailableReason, DpdkTestpmd::unavailableReason);
    }

    /** Heap live after a full GC, NMT committed (total and per category), mappings; sizes in bytes / KB. */
    record Reading(long liveHeapBytes, long nmtTotalKb, Map<String, Long> nmtKb, int maps) {
    }

    @Test
    void reconnectsUnderTrafficGiveBackFdsHeapAndNativeMemory() throws Exception {
        long t0 = System.nanoTime();
        try (NetNs ns = NetNs.create();
             JvhostProcess jv = JvhostProcess.start("jvhost-mem", ns, List.of(), List.of("-XX:NativeMemoryTracking=summary"),
                     "--socket-path=" + socket, "--tap=" + tap)) {
            jv.awaitLog("listening on", 0, JvhostProcess.START_TIMEOUT);
            ns.address(tap, HOST_IP + "/24");
            Jcmd vm = new Jcmd(jv.pid());
            vm.run("VM.version"); // starts the attach listener, whose socket stays open from now on
            int beforeFirst = fds(jv.pid());
            // The worker pool starts a worker (its epoll and eventfd) for the first session and keeps it:
            // the fds after the first session are the ones every later session must give back to.
            int baseFds = -1;
            List<Integer> fdsAfter = new ArrayList<>();
            Reading warm = null;
            int line = 0;
            for (int k = 1; k <= SESSIONS; k++) {
                long tapBefore = ns.linkStats(tap).rxPackets();
                if (k % TESTPMD_EVERY == 0) {
                    testpmdSession(k);
                } else {
                    javaDriverSession(ns, k);
                }
                line = jv.awaitLog("front-end disconnected", line, Duration.ofSeconds(30)) + 1;
                long moved = ns.linkStats(tap).rxPackets() - tapBefore;
                assertTrue(moved >= (k % TESTPMD_EVERY == 0 ? 1 : TX_FRAMES), "session " + k + ": " + moved + " frames at the tap");
                // The disconnect is logged before the session's fds are closed: wait for them (bounded).
                int fds = k == 1 ? awaitStableFds(jv.pid(), Duration.ofSeconds(10)) : awaitFds(jv.pid(), baseFds,
                        Duration.ofSeconds(10));
                fdsAfter.add(fds);
                if (k == 1) {
                    baseFds = fds;
                    assertTrue(baseFds <= beforeFirst + 4, "fds after the first session: " + baseFds + ", before it: "
                            + beforeFirst + "\n" + String.join("\n", fdList(jv.pid())));
                }
                assertEquals(baseFds, fds, "jvhost's open fds after session " + k + " (after the first: " + baseFds
                        + ")\n" + String.join("\n", fdList(jv.pid())));
                if (k == WARMUP) {
                    warm = read(vm, jv.pid());
                }
            }
            Reading end = read(vm, jv.pid());
            String report = String.format("""
                    JvhostMemoryIT: %d sessions; after warm-up (session %d) → end:
                      live heap      %,d → %,d bytes (%+,d)
                      NMT committed  %,d → %,d KB (%+,d); Other (FFM) %,d → %,d KB
                      NMT by category (KB) at warm-up %s
                                             at end   %s
                      mappings       %d → %d
                      fds after each session: %s (before the first: %d)
                      wall time %d s""", SESSIONS, WARMUP, warm.liveHeapBytes(), end.liveHeapBytes(),
                    end.liveHeapBytes() - warm.liveHeapBytes(), warm.nmtTotalKb(), end.nmtTotalKb(),
                    end.nmtTotalKb() - warm.nmtTotalKb(), warm.nmtKb().getOrDefault("Other", 0L),
                    end.nmtKb().getOrDefault("Other", 0L), warm.nmtKb(), end.nmtKb(), warm.maps(), end.maps(), fdsAfter,
                    beforeFirst, TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t0));
            System.out.println(report);
            assertTrue(end.liveHeapBytes() - warm.liveHeapBytes() <= LIVE_HEAP_SLACK, "live heap grew\n" + report);
            assertTrue(end.nmtKb().getOrDefault("Other", 0L) - warm.nmtKb().getOrDefault("Other", 0L) <= NMT_OTHER_SLACK_KB,
                    "native memory allocated through FFM grew\n" + report);
            assertTrue(end.nmtTotalKb() - warm.nmtTotalKb() <= NMT_TOTAL_SLACK_KB, "NMT committed grew\n" + report);
            assertTrue(end.maps() - warm.maps() <= MAPS_SLACK, "mappings grew\n" + report);
            assertEquals(0, jv.terminate(Duration.ofSeconds(10)), "clean exit on SIGTERM\n" + jv.tail(30));
            assertTrue(!jv.logged("virtqueue broken", 0) && !jv.logged("SEVERE", 0) && !jv.logged("Exception", 0),
                    "no broken queue, no error\n" + jv.tail(60));
        }
    }

    /** The Java driver in this JVM: ping from the host (RX and TX), then a TX burst; then it disconnects. */
    private void javaDriverSession(NetNs ns, int k) throws Exception {
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX)
                | ((k & 1) == 0 ? VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) : 0);
        try (DriverMemory mem = DriverMemory.memfd("mem-it", GuestNic.ramNeeded(1, RING, 1514, features),
                DriverMemory.DEFAULT_GPA_BASE);
             GuestNic nic = new GuestNic(mem, 1, features, RING, 1514);
             VhostUserClient client = VhostUserClient.connect(socket.toString())) {
            nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
            GuestStack stack = new GuestStack(nic, GUEST_MAC, Packets.ip(10, 77, 0, 2));
            AtomicBoolean stop = new AtomicBoolean();
            CompletableFuture<Void> pump = CompletableFuture.runAsync(() -> {
                while (!stop.get()) {
                    stack.pump(0, 20);
                }
            });
            Cmd.Result ping;
            try {
                ping = ns.ping(GUEST_IP, 3, Duration.ofMillis(20), Duration.ofSeconds(20));
            } finally {
                stop.set(true);
                pump.get(10, TimeUnit.SECONDS);
            }
            assertTrue(ping.ok() && ping.output().contains("3 packets received"), "session " + k + ": " + ping.output());
            // To a MAC nobody on the tap's side owns: counted by the tap, dropped by the stack.
            byte[] frame = new byte[64];
            System.arraycopy(new byte[] {2, 0, 0, 0, 0, 9}, 0, frame, 0, 6);
            System.arraycopy(GUEST_MAC, 0, frame, 6, 6);
            frame[12] = 0x08;
            for (int i = 0; i < TX_FRAMES; i++) {
                assertTrue(nic.send(0, frame, 5_000), "session " + k + ": TX buffer back within 5 s, frame " + i);
            }
            assertTrue(nic.flushTx(0, 10_000), "session " + k + ": every TX frame used");
        }
    }

    private void testpmdSession(int k) throws Exception {
        try (DpdkTestpmd tp = DpdkTestpmd.virtioUser(socket, false, "txonly", 64, 1, Duration.ofSeconds(2))) {
            long sent = tp.awaitStats(Duration.ofSeconds(60)).get(0).tx();
            assertTrue(sent > 0, "session " + k + ": testpmd sent nothing\n" + tp.tail(20));
        }
    }

    private static Reading read(Jcmd vm, long pid) throws Exception {
        // GC.class_histogram runs a full GC first and ends with the live total.
        String histo = vm.run("GC.class_histogram");
        String[] last = histo.strip().lines().reduce((a, b) -> b).orElse("").trim().split("\\s+");
        long live = Long.parseLong(last[last.length - 1]);
        String nmt = vm.run("VM.native_memory", "summary");
        java.util.regex.Matcher tot = java.util.regex.Pattern.compile("Total: reserved=\\d+KB, committed=(\\d+)KB").matcher(nmt);
        assertTrue(tot.find(), "NMT summary:\n" + nmt);
        Map<String, Long> cats = new java.util.TreeMap<>();
        java.util.regex.Matcher c = java.util.regex.Pattern
                .compile("(?m)^-\\s+(.+?) \\(reserved=\\d+KB, committed=(\\d+)KB\\)").matcher(nmt);
        while (c.find()) {
            cats.put(c.group(1).strip(), Long.parseLong(c.group(2)));
        }
        int maps;
        try (Stream<String> s = Files.lines(Path.of("/proc", Long.toString(pid), "maps"))) {
            maps = (int) s.count();
        }
        return new Reading(live, Long.parseLong(tot.group(1)), cats, maps);
    }

    /** The fd count once it has not changed for 0.5 s (at most {@code timeout}). */
    private static int awaitStableFds(long pid, Duration timeout) throws Exception {
        long end = System.nanoTime() + timeout.toNanos();
        int n = fds(pid);
        int same = 0;
        while (same < 25 && System.nanoTime() < end) {
            Thread.sleep(20);
            int m = fds(pid);
            same = m == n ? same + 1 : 0;
            n = m;
        }
        return n;
    }

    private static int awaitFds(long pid, int want, Duration timeout) throws Exception {
        long end = System.nanoTime() + timeout.toNanos();
        int n = fds(pid);
        while (n != want && System.nanoTime() < end) {
            Thread.sleep(20);
            n = fds(pid);
        }
        return n;
    }

    private static int fds(long pid) throws Exception {
        try (Stream<Path> s = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            return (int) s.count();
        }
    }

    private static List<String> fdList(long pid) {
        try (Stream<Path> s = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            return s.map(p -> {
                try {
                    return p.getFileName() + " -> " + Files.readSymbolicLink(p);
                } catch (Exception e) {
                    return p.getFileName() + " -> ?";
                }
            }).sorted().toList();
        } catch (Exception e) {
            return List.of("?");
        }
    }

    /** {@code jcmd PID ...} against the jvhost process. */
    record Jcmd(long pid) {
        String run(String... args) throws Exception {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "jcmd").toString(),
                    Long.toString(pid)));
            cmd.addAll(List.of(args));
            Cmd.Result r = Cmd.run(Duration.ofSeconds(60), cmd);
            assertTrue(r.ok(), "jcmd " + String.join(" ", args) + ":\n" + r.output());
            return r.output();
        }
    }
}
