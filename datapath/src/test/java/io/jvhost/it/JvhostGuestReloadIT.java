package io.jvhost.it;

import io.jvhost.virtq.BrokenQueues;
import io.jvhost.stats.Counter;
import io.jvhost.engine.QueuePair;
import io.jvhost.engine.QueuePairProxy;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.DropReason;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.VirtqError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static io.jvhost.it.JvhostQemuIT.STEP;
import static io.jvhost.it.QemuGuest.BOOT_TIMEOUT;
import static io.jvhost.it.QemuGuest.GUEST_IP;
import static io.jvhost.it.QemuGuest.HOST_IP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What a running Linux guest does to its NIC besides plain traffic, with jvhost running throughout:
 * its {@code virtio_net} driver unloaded and loaded again (the device is reset: QEMU stops every ring
 * with GET_VRING_BASE, and on the next DRIVER_OK sets up new rings at new addresses from base 0),
 * once idle, once while the host streams TCP into the guest and pings it fast (rings mid-use at the
 * stop), once back to back; then {@code ip link set eth0 down/up} and an MTU change. After each,
 * ping both ways and TCP both ways (MD5) through 2 queue pairs; jvhost must not break a queue,
 * drop a frame as malformed or log an error, and the interrupted stream must arrive intact.
 */
@Tag("privileged")
@Timeout(900) // ~70 s here; a TCG guest on a loaded CI machine boots and streams several times slower
class JvhostGuestReloadIT {
    private static final int MIB = 2;
    /** Host → guest stream that is in flight while the driver is unloaded. */
    private static final int STREAM_MIB = 24;
    private static final int SINK = 5001;
    private static final int SOURCE = 5002;
    private static final Duration RECOVERY = Duration.ofSeconds(60);

    @RegisterExtension
    final Scratch scratch = new Scratch("jvl", "vhost.sock");
    private final String tap = scratch.tap();
    private final Path socket = scratch.socket();

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(true, QemuGuest::unavailableReason);
    }

    @Test
    void guestReloadsItsDriverResetsAndReconfiguresTheNicWhileJvhostRuns() throws Exception {
        long t0 = System.nanoTime();
        long brokenBefore = BrokenQueues.count();
        try (LogWatch logs = new LogWatch();
             NetNs ns = NetNs.create();
             Jvhost jv = Jvhost.server(socket, tap, 2, FeatureSet.all())) {
            ns.moveIn(tap).address(tap, HOST_IP + "/24");
            try (QemuGuest g = QemuGuest.builder(socket).name("jvhost-reload").queues(2).hostMtu(1500)
                    .run("ping", "shell").param("mib", MIB).start()) {
                assertEquals(0, g.awaitMarker("PING", BOOT_TIMEOUT).intField("rc"), "guest → host ping\n" + g.tail(30));
                awaitStep(g, "shell");
                // Guest services for the whole run; their listening sockets are not tied to eth0, so they
                // outlive every reload: a TCP sink printing each stream's MD5, a source of MIB MiB.
                g.sendLine("nc -ll -p " + SINK + " -e /init sink &");
                g.sendLine("nc -ll -p " + SOURCE + " -e /init source " + MIB + " &");
                Check check = new Check(ns, g, jv, logs, brokenBefore);
                check.traffic("boot");

                check.reload("reload 1 (idle)", 1);
                check.traffic("after reload 1");

                reloadUnderLoad(check, ns, g, jv);
                check.traffic("after reload 2");

                pauseUnderLoad(check, ns, g, jv, logs);
                check.traffic("after stop/cont");

                check.reload("reload 3 (back to back)", 0);
                check.traffic("after reload 3");

                int beforeLink = logs.eventCount();
                g.sendLine("ip link set eth0 down; sleep 1; ip link set eth0 up; echo JVHOST-LINK\" \"up=$(cat /sys/class/net/eth0/operstate)");
                assertEquals("up", g.awaitMarker("LINK", STEP).field("up"), "eth0 up again\n" + g.tail(20));
                check.traffic("after link down/up");
                System.out.println("link down/up: vhost-user session lines " + logs.eventsSince(beforeLink).stream()
                        .map(e -> e.substring(e.lastIndexOf(": ") + 2)).toList());
                int beforeMtu = logs.eventCount();

                g.sendLine("ip link set eth0 mtu 1400; echo JVHOST-MTU\" \"mtu=$(cat /sys/class/net/eth0/mtu)");
                assertEquals(1400, g.awaitMarker("MTU", STEP).intField("mtu"), g.tail(20));
                check.traffic("after mtu 1400");
                System.out.println("mtu 1400: vhost-user session lines " + logs.eventsSince(beforeMtu).stream()
                        .map(e -> e.substring(e.lastIndexOf(": ") + 2)).toList());
                // 1400-byte IP packets: exactly the guest's new MTU
                Cmd.Result big = ns.exec(STEP, "busybox", "ping", "-c", "3", "-s", "1372", "-w", "30", GUEST_IP);
                assertTrue(big.ok() && big.output().contains("3 packets received"), "host → guest 1400-byte ping\n" + big.output());

                assertTrue(g.isAlive(), "QEMU still runs\n" + g.tail(30));
                String qemuTrouble = qemuComplaints(g);
                assertTrue(qemuTrouble.isEmpty(), "QEMU complained about its vhost-user back-end:\n" + qemuTrouble);
                assertTrue(jv.sessionActive(), "the same vhost-user session served every reload");
                check.healthy("end");
                System.out.println("jvhost counters after the run:\n" + jv.table());
                System.out.println("jvhost warnings during the run: " + (logs.warnings().isEmpty() ? "none" : "\n" + String.join("\n", logs.warnings())));
            }
        }
        System.out.printf("JvhostGuestReloadIT: wall time %d s%n", TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t0));
    }

    /**
     * Unloads the driver while a {@value #STREAM_MIB} MiB host → guest stream and a fast host ping
     * are running, so the RX ring holds jvhost's window and the TX ring replies at the stop. The
     * stream's TCP connection lives in the guest's socket layer, not in the driver: it resumes
     * once eth0 is back (retransmits) and must arrive intact.
     */
    private static void reloadUnderLoad(Check check, NetNs ns, QemuGuest g, Jvhost jv) throws Exception {
        String round = "reload 2 (under host → guest load)";
        HostLoad load = HostLoad.start(round, ns, jv, 2, Duration.ofSeconds(15));
        check.reload(round, 2);
        load.finish(round, g, jv, "interrupted", "the unload");
        assertTrue(load.midStream, round + ": the stream was still running when the driver went away");
    }

    /**
     * A {@value #STREAM_MIB} MiB host → guest TCP stream of random bytes and a fast host ping, both
     * running on virtual threads; {@link #start} returns once the stream got going.
     */
    private record HostLoad(byte[] data, CompletableFuture<Void> stream, CompletableFuture<Cmd.Result> flood,
                            boolean midStream) {
        static HostLoad start(String round, NetNs ns, Jvhost jv, long seed, Duration pingFor) throws Exception {
            byte[] data = new byte[STREAM_MIB << 20];
            new Random(seed).nextBytes(data);
            long rx0 = jv.total(Counter.RX_BYTES);
            CompletableFuture<Void> stream = ns.sendAsync(GUEST_IP, SINK, data, STEP.plus(RECOVERY));
            CompletableFuture<Cmd.Result> flood = CompletableFuture.supplyAsync(
                    () -> ns.ping(GUEST_IP, 100_000, Duration.ofMillis(5), pingFor),
                    r -> Thread.ofVirtual().start(r));
            assertTrue(Jvhost.await(() -> jv.total(Counter.RX_BYTES) > rx0 + (2 << 20) || stream.isDone(), STEP),
                    round + ": the stream got going\n" + jv.table());
            return new HostLoad(data, stream, flood, !stream.isDone());
        }

        /** Waits for the stream (it must arrive intact: MD5 and length in the guest) and the ping. */
        void finish(String round, QemuGuest g, Jvhost jv, String how, String event) throws Exception {
            stream.get(STEP.plus(RECOVERY).toSeconds(), TimeUnit.SECONDS);
            QemuGuest.Marker rx = g.awaitMarker("RX-MD5", STEP);
            assertEquals(NetNs.md5(data), rx.first(), round + ": the " + how + " stream arrived intact\n" + jv.table());
            assertEquals((long) data.length, Long.parseLong(rx.field("bytes")));
            Cmd.Result pings = flood.get(60, TimeUnit.SECONDS);
            System.out.println(round + ": stream " + (midStream ? "was in flight at " : "finished before ") + event
                    + "; fast ping: " + lastLine(pings.output(), "packets"));
        }
    }

    /**
     * QEMU's monitor {@code stop}, then {@code cont}, while the host streams into the guest: on
     * {@code stop} QEMU stops the back-end's rings (GET_VRING_BASE) without a device reset, and on
     * {@code cont} starts them again from the bases jvhost returned. Unlike after a reload, the
     * base matters here: it must be exactly the ring's used index (every chain jvhost took,
     * including its RX window and a TX chain held by backpressure, given back), or the start would
     * find {@code used.idx != base} (logged "resuming at") and the guest would lose buffers.
     */
    private static void pauseUnderLoad(Check check, NetNs ns, QemuGuest g, Jvhost jv, LogWatch logs) throws Exception {
        String round = "stop/cont (under host → guest load)";
        HostLoad load = HostLoad.start(round, ns, jv, 3, Duration.ofSeconds(10));
        int from = logs.eventCount();
        long stops = logs.count("stopped at");
        long starts = logs.count(" started (");
        // The serial console is multiplexed with QEMU's monitor (-serial mon:stdio): Ctrl-A c switches.
        g.sendLine("\u0001c");
        g.sendLine("stop");
        assertTrue(Jvhost.await(() -> logs.count("stopped at") >= stops + 4, STEP),
                round + ": QEMU stopped every ring\n" + g.tail(10));
        Thread.sleep(1000);
        g.sendLine("cont");
        assertTrue(Jvhost.await(() -> logs.count(" started (") >= starts + 4, STEP),
                round + ": QEMU started every ring again\n" + g.tail(10));
        g.sendLine("\u0001c");
        List<String> seen = logs.eventsSince(from);
        for (int q = 0; q < 4; q++) {
            String base = lastMatch(seen, "ring " + q + " stopped at ", "$");
            String resumed = lastMatch(seen, "ring " + q + " started \\(size \\d+, base ", ", (kicked|polled)"); // bases print with grouping commas
            assertTrue(base != null && base.equals(resumed), round + ": ring " + q + " resumed at the base it stopped at\n"
                    + String.join("\n", seen));
        }
        System.out.println(round + ": " + String.join(" | ", seen.stream()
                .filter(e -> e.contains("stopped at") || e.contains(" started ("))
                .map(e -> e.substring(e.lastIndexOf(": ") + 2)).toList()));
        load.finish(round, g, jv, "paused", "the stop");
        assertTrue(load.midStream, round + ": the stream was still running when QEMU stopped");
        check.healthy(round);
    }

    /** The text after {@code prefixRegex} up to {@code endRegex} in the last line that has it, or null. */
    private static String lastMatch(List<String> lines, String prefixRegex, String endRegex) {
        java.util.regex.Pattern p = java.util.regex.Pattern.compile(prefixRegex + "(.*?)" + endRegex);
        String found = null;
        for (String l : lines) {
            java.util.regex.Matcher m = p.matcher(l);
            if (m.find()) {
                found = m.group(1);
            }
        }
        return found;
    }

    /** The checks every round makes; holds what they need. */
    private record Check(NetNs ns, QemuGuest g, Jvhost jv, LogWatch logs, long brokenBefore) {
        /** {@code /init reload pause} typed on the guest's shell: driver out, {@code pause} s, driver in, eth0 configured. */
        void reload(String round, int pauseSeconds) throws Exception {
            long t = System.nanoTime();
            int from = logs.eventCount();
            g.sendLine("/init reload " + pauseSeconds);
            assertEquals(0, g.awaitMarker("UNLOADED", STEP).intField("rc"), round + ": rmmod\n" + g.tail(20));
            QemuGuest.Marker m = g.awaitMarker("RELOADED", RECOVERY.plus(STEP));
            assertEquals(0, m.intField("rc"), round + ": driver back, eth0 configured, host answers\n" + g.tail(30)
                    + "\n" + jv.table());
            assertEquals(2, m.intField("queues"), round + ": both queue pairs again");
            System.out.printf("%s: driver out and in again, peer answered after %d ms%n", round,
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t));
            // The reset reached jvhost as a stop of every ring (GET_VRING_BASE) and the new driver's
            // rings were started again, all on the same vhost-user connection.
            List<String> seen = logs.eventsSince(from);
            for (int q = 0; q < 4; q++) {
                String stopped = "ring " + q + " stopped at";
                String started = "ring " + q + " started";
                assertTrue(seen.stream().anyMatch(e -> e.contains(stopped)) && seen.stream().anyMatch(e -> e.contains(started)),
                        round + ": ring " + q + " stopped and started again; session log:\n" + String.join("\n", seen));
            }
            assertEquals(1, logs.count("front-end connected"), round + ": one vhost-user connection throughout");
            System.out.println(round + ": " + String.join(" | ", seen.stream()
                    .filter(e -> e.contains("stopped at") || e.contains(" started (") || e.contains("RESET")
                            || e.contains("MEM_TABLE") || e.contains("MEM_REG"))
                    .map(e -> e.substring(e.lastIndexOf(": ") + 2)).toList()));
            healthy(round);
        }

        /** Ping both ways, {@value #MIB} MiB of TCP each way with MD5s compared. */
        void traffic(String round) throws Exception {
            Cmd.Result hostPing = ns.ping(GUEST_IP, 3, Duration.ofMillis(200), RECOVERY);
            assertTrue(hostPing.ok() && hostPing.output().contains("3 packets received"),
                    round + ": host → guest ping\n" + hostPing.output() + "\n" + jv.table());
            g.sendLine("ping -c 3 -w 30 " + HOST_IP + " > /dev/null 2>&1; echo JVHOST-GPING\" \"rc=$?");
            assertEquals(0, g.awaitMarker("GPING", STEP).intField("rc"), round + ": guest → host ping\n" + g.tail(20));

            byte[] data = new byte[MIB << 20];
            new Random(round.hashCode()).nextBytes(data);
            ns.send(GUEST_IP, SINK, data, STEP);
            QemuGuest.Marker rx = g.awaitMarker("RX-MD5", STEP);
            assertEquals(NetNs.md5(data), rx.first(), round + ": host → guest stream intact\n" + jv.table());
            NetNs.Received back = ns.receive(GUEST_IP, SOURCE, STEP);
            assertEquals(g.awaitSourceMarker(back.md5(), STEP).first(), back.md5(), round + ": guest → host stream intact\n" + jv.table());
            assertEquals((long) MIB << 20, back.bytes(), round);
            healthy(round);
        }

        /**
         * No queue broken (now, or at any time: the process-wide count, which a ring restart does
         * not clear), no guest-memory fault, no frame dropped as malformed, no ERROR logged.
         */
        void healthy(String round) {
            for (int qp = 0; qp < 2; qp++) {
                QueuePairProxy w = jv.device().queuePair(qp);
                for (int role : new int[]{QueuePair.RX, QueuePair.TX}) {
                    VirtqError why = w.brokenReason(role);
                    assertEquals(null, why, round + ": " + w.name() + " role " + role + " broken: " + w.brokenMessage(role));
                }
            }
            assertEquals(brokenBefore, BrokenQueues.count(), round + ": a queue was marked broken\n" + logs.all());
            assertEquals(0, jv.total(Counter.MEMORY_FAULTS), round + ": memory faults\n" + jv.table());
            for (QueueStats s : jv.stats()) {
                for (DropReason r : new DropReason[]{DropReason.TX_TOO_SHORT, DropReason.TX_TOO_LONG, DropReason.TX_BAD_GSO,
                        DropReason.TX_BAD_CSUM, DropReason.TX_BAD_CHAIN, DropReason.TX_TAP_ERROR, DropReason.RX_TOO_BIG,
                        DropReason.RX_BAD_CHAIN}) {
                    assertEquals(0, s.drops(r), round + ": q" + s.queuePair() + " " + r + "\n" + jv.table());
                }
            }
            assertTrue(logs.errors().isEmpty(), round + ": jvhost logged errors:\n" + String.join("\n", logs.errors()));
            List<String> bad = logs.warnings().stream()
                    .filter(w -> w.contains("broken") || w.contains("resuming at") || w.contains("outside")).toList();
            assertTrue(bad.isEmpty(), round + ": jvhost warned:\n" + String.join("\n", bad));
        }
    }

    private static void awaitStep(QemuGuest g, String name) throws InterruptedException {
        while (!g.awaitMarker("STEP", STEP).first().equals(name)) {
            // earlier steps
        }
    }

    /** QEMU's own lines about its vhost-user back-end going wrong (ring restore, message failures). */
    private static String qemuComplaints(QemuGuest g) {
        StringBuilder b = new StringBuilder();
        for (String l : g.output()) {
            if (l.contains("vhost") && (l.contains("failed") || l.contains("Failed") || l.contains("error"))) {
                b.append(l).append('\n');
            }
        }
        return b.toString();
    }

    private static String lastLine(String out, String containing) {
        String found = "";
        for (String l : out.split("\n")) {
            if (l.contains(containing)) {
                found = l.strip();
            }
        }
        return found;
    }

    /**
     * Collects what jvhost logs at WARNING and above (System.Logger → java.util.logging, loggers
     * named after jvhost's classes) while the test runs, and the vhost-user session's DEBUG lines
     * (ring stops and starts) to check what the front-end did.
     */
    static final class LogWatch extends Handler implements AutoCloseable {
        private final Logger root = Logger.getLogger("io.jvhost");
        private final Logger session = Logger.getLogger("io.jvhost.vhostuser");
        private final Level savedSessionLevel = session.getLevel();
        private final List<String> errors = new ArrayList<>();
        private final List<String> warnings = new ArrayList<>();
        private final List<String> events = new ArrayList<>();

        LogWatch() {
            setLevel(Level.ALL);
            session.setLevel(Level.FINE);
            root.addHandler(this);
        }

        @Override
        public synchronized void publish(LogRecord r) {
            String msg = r.getLoggerName() + ": " + new java.util.logging.SimpleFormatter().formatMessage(r)
                    + (r.getThrown() != null ? " (" + r.getThrown() + ")" : "");
            if (r.getLoggerName() != null && r.getLoggerName().startsWith("io.jvhost.vhostuser")) {
                events.add(msg);
            }
            if (r.getLevel().intValue() >= Level.SEVERE.intValue()) {
                errors.add(msg);
            } else if (r.getLevel().intValue() >= Level.WARNING.intValue()) {
                warnings.add(msg);
            }
        }

        synchronized List<String> errors() {
            return List.copyOf(errors);
        }

        synchronized List<String> warnings() {
            return List.copyOf(warnings);
        }

        synchronized int eventCount() {
            return events.size();
        }

        /** Session log lines from index {@code from} on. */
        synchronized List<String> eventsSince(int from) {
            return List.copyOf(events.subList(from, events.size()));
        }

        synchronized long count(String what) {
            return events.stream().filter(e -> e.contains(what)).count();
        }

        synchronized String all() {
            return String.join("\n", errors) + "\n" + String.join("\n", warnings);
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
            root.removeHandler(this);
            session.setLevel(savedSessionLevel);
        }
    }
}
