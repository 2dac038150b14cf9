package io.jvhost.it;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.UnixSocket;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * 64 devices in one jvhost process (the shipped jar, default worker settings): 64 sockets and taps,
 * 64 Java-driver front-ends in this JVM, the taps on one bridge in a namespace. Shows that
 * <ul>
 *   <li>every device exchanges traffic (the namespace pings each guest; each device's own counters,
 *       read from its stats socket, count frames both ways and no drop);</li>
 *   <li>the process has at most its workers plus a fixed few threads: no thread is any one device's
 *       (control loops and stats endpoints are virtual threads), the workers are at most the CPUs;</li>
 *   <li>idle for 30 s, the process uses less than 1 % of a CPU;</li>
 *   <li>and what a device costs in resident memory (printed: RSS of a one-device process, of the
 *       64-device process before and after its front-ends attached and moved traffic).</li>
 * </ul>
 * One jvhost start of one device first, for the memory baseline.
 */
@Tag("privileged")
@Timeout(value = 900, unit = TimeUnit.SECONDS)
class JvhostScaleIT {
    static final int DEVICES = Integer.getInteger("jvhost.scale.devices", 64);
    static final int RING = 64;
    /** Threads a jvhost process has besides its workers, whatever its device count (JVM, poller, carriers). */
    static final int FIXED_FEW = 40;
    static final Duration IDLE = Duration.ofSeconds(30);
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);
    private static final Pattern FRAMES = Pattern.compile("\"(tx|rx)_frames\":(\\d+)");
    private static final Pattern DROPS = Pattern.compile("\"drops\":\\{([^}]*)}");
    private static final long TICKS_PER_SECOND = 100; // USER_HZ

    @RegisterExtension
    final Scratch scratch = new Scratch("jsc", "vm.sock");

    @BeforeAll
    static void peersAvailable() {
        Peers.assumeAvailable(false, JvhostProcess::unavailableReason);
    }

    @Test
    void sixtyFourDevicesInOneProcess() throws Exception {
        String hex = scratch.tap().substring(3);
        long rssOne = oneDeviceRss(hex);

        NetNs ns = NetNs.create();
        JvhostProcess jv = null;
        List<Front> fronts = new ArrayList<>();
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> pumps = new ArrayList<>();
        try {
            List<String> args = new ArrayList<>();
            for (int i = 0; i < DEVICES; i++) {
                args.add("--socket-path=" + socket(i));
                args.add("--tap=" + tap(hex, i));
            }
            jv = JvhostProcess.start("jvhost-scale", ns, args.toArray(new String[0]));
            jv.awaitLog("jvhost: " + DEVICES + " device(s)", 0, JvhostProcess.START_TIMEOUT);
            long pid = jv.pid();
            long rssListening = rssKib(pid);
            int threadsListening = threadNames(pid).size();

            String br = "jsb" + hex;
            ns.execOk("ip", "link", "add", br, "type", "bridge");
            ns.execOk("ip", "addr", "add", "10.88.0.1/16", "dev", br);
            ns.execOk("ip", "link", "set", br, "up");
            for (int i = 0; i < DEVICES; i++) {
                ns.execOk("ip", "link", "set", tap(hex, i), "master", br, "up");
            }

            for (int i = 0; i < DEVICES; i++) {
                Front f = new Front(i, socket(i));
                fronts.add(f);
                Thread t = Thread.ofPlatform().name("guest-" + i).daemon().start(() -> {
                    while (!stop.get()) {
                        f.stack.pump(0, 50);
                    }
                });
                pumps.add(t);
            }

            // Traffic through every device: three pings each (ARP, echo request, echo reply).
            StringBuilder script = new StringBuilder();
            for (int i = 0; i < DEVICES; i++) {
                String ip = Packets.ipString(guestIp(i));
                script.append("(busybox ping -c 3 -i 0.2 -W 5 -q ").append(ip).append(" >/dev/null && echo ok ").append(ip)
                        .append(" || echo FAIL ").append(ip).append(") & ");
            }
            script.append("wait");
            String out = ns.execOk("sh", "-c", script.toString());
            long ok = out.lines().filter(l -> l.startsWith("ok ")).count();
            if (ok != DEVICES) {
                System.out.println(ns.execOk("ip", "-s", "link", "show", tap(hex, 0)) + ns.execOk("ip", "neigh")
                        + ns.execOk("bridge", "link", "show")
                        + stats(socket(0) + ".stats") + "\n" + fronts.get(0).nic.describe(0) + "\nguest 0 arp replies "
                        + fronts.get(0).stack.arpReplies() + " echo replies " + fronts.get(0).stack.echoReplies());
            }
            assertEquals(DEVICES, ok, "guests that answered pings:\n" + out);

            String workers = null;
            for (int i = 0; i < DEVICES; i++) {
                String json = stats(socket(i) + ".stats");
                Matcher m = FRAMES.matcher(json);
                long tx = -1;
                long rx = -1;
                while (m.find()) {
                    if (m.group(1).equals("tx")) {
                        tx = Long.parseLong(m.group(2));
                    } else {
                        rx = Long.parseLong(m.group(2));
                    }
                }
                assertTrue(tx >= 3 && rx >= 3, "vm" + i + " tx " + tx + " rx " + rx + ": " + json);
                Matcher d = DROPS.matcher(json);
                assertTrue(d.find(), json);
                for (String kv : d.group(1).split(",")) {
                    assertTrue(kv.endsWith(":0"), "vm" + i + " dropped: " + kv);
                }
                workers = json.substring(json.indexOf("\"workers\":"));
            }
            long rssAttached = rssKib(pid);

            Map<String, Integer> names = threadNames(pid);
            int workerThreads = names.entrySet().stream().filter(e -> e.getKey().startsWith("jvhost-w"))
                    .mapToInt(Map.Entry::getValue).sum();
            int threads = names.values().stream().mapToInt(Integer::intValue).sum();
            int cpus = Runtime.getRuntime().availableProcessors();
            System.out.printf("threads: %d listening, %d with %d devices attached (%d workers, %d CPUs): %s%n",
                    threadsListening, threads, DEVICES, workerThreads, cpus, names);
            System.out.println("workers: " + workers);
            assertTrue(workerThreads >= 1 && workerThreads <= cpus, "workers: " + names);
            assertTrue(threads <= workerThreads + FIXED_FEW, "threads " + threads + ": " + names);
            for (String n : names.keySet()) {
                assertTrue(!n.startsWith("jvhost-vm"), "a thread of its own for one device: " + n);
            }
            int pairsHeld = 0;
            Matcher q = Pattern.compile("\"queue_pairs\":\\[([^]]*)]").matcher(workers);
            while (q.find()) {
                pairsHeld += q.group(1).isBlank() ? 0 : q.group(1).split(",").length;
            }
            assertEquals(DEVICES, pairsHeld, "every device's pair on a worker: " + workers);

            // Idle: no traffic (the pumps only wait on their call eventfds).
            Thread.sleep(2000);
            Map<String, Long> switches0 = contextSwitches(pid);
            long t0 = cpuTicks(pid);
            long n0 = System.nanoTime();
            Thread.sleep(IDLE.toMillis());
            long ticks = cpuTicks(pid) - t0;
            double seconds = (System.nanoTime() - n0) / 1e9;
            Map<String, Long> switches = contextSwitches(pid);
            switches.replaceAll((k, v) -> v - switches0.getOrDefault(k, 0L));
            switches.values().removeIf(v -> v <= 0); // negative: threads of that name ended (pool carriers)
            double cpuPercent = 100.0 * ticks / TICKS_PER_SECOND / seconds;
            System.out.printf("idle %.1f s: %d ticks of CPU = %.2f %% of one CPU; wake-ups by thread: %s%n", seconds,
                    ticks, cpuPercent, switches);
            System.out.printf("RSS: one device %d KiB; %d devices listening %d KiB, attached after traffic %d KiB:"
                            + " %.0f KiB per idle device, %.0f KiB per attached session%n", rssOne, DEVICES,
                    rssListening, rssAttached, (rssListening - rssOne) / (double) (DEVICES - 1),
                    (rssAttached - rssListening) / (double) DEVICES);
            assertTrue(cpuPercent < 1.0, "idle CPU " + cpuPercent + " %; wake-ups: " + switches);
        } finally {
            stop.set(true);
            for (Thread t : pumps) {
                t.join(5000);
            }
            for (Front f : fronts) {
                f.close();
            }
            if (jv != null) {
                int code = jv.terminate(Duration.ofSeconds(30));
                if (code != 0) {
                    System.err.println(jv.tail(40));
                }
            }
            ns.close();
        }
    }

    /** RSS of a jvhost serving one device, started and stopped for the baseline. */
    private long oneDeviceRss(String hex) throws Exception {
        NetNs ns = NetNs.create();
        try (JvhostProcess one = JvhostProcess.start("jvhost-one", ns, "--socket-path=" + scratch.dir().resolve("one.sock"),
                "--tap=jso" + hex)) {
            one.awaitLog("jvhost: 1 device(s)", 0, JvhostProcess.START_TIMEOUT);
            long rss = rssKib(one.pid());
            assertEquals(0, one.terminate(Duration.ofSeconds(30)), one.tail(20));
            return rss;
        } finally {
            ns.close();
        }
    }

    private String socket(int i) {
        return scratch.dir().resolve("vm" + i + ".sock").toString();
    }

    private static String tap(String hex, int i) {
        return String.format("jsc%s%02d", hex, i);
    }

    static int guestIp(int i) {
        return Packets.ip(10, 88, 1 + i / 250, 1 + i % 250);
    }

    /** One Java-driver front-end and its IPv4 stack. */
    static final class Front implements AutoCloseable {
        final DriverMemory mem;
        final GuestNic nic;
        final VhostUserClient client;
        final GuestStack stack;

        Front(int i, String socket) {
            mem = DriverMemory.memfd("scale-" + i, GuestNic.ramNeeded(1, RING, 1514, FEATURES),
                    DriverMemory.DEFAULT_GPA_BASE);
            nic = new GuestNic(mem, 1, FEATURES, RING, 1514);
            client = VhostUserClient.connect(socket);
            nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
            stack = new GuestStack(nic, new byte[] {0x52, 0x54, 0, (byte) 0x88, (byte) (i >> 8), (byte) i}, guestIp(i));
        }

        @Override
        public void close() {
            client.close();
            nic.close();
            mem.close();
        }
    }

    /** What the device's stats socket answers to "json". */
    static String stats(String path) {
        int fd = UnixSocket.connect(path);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(1 << 16);
            byte[] req = "json\n".getBytes(StandardCharsets.US_ASCII);
            MemorySegment.copy(req, 0, buf, ValueLayout.JAVA_BYTE, 0, req.length);
            Fds.write(fd, buf, req.length);
            StringBuilder sb = new StringBuilder();
            long n;
            while ((n = Fds.read(fd, buf, buf.byteSize())) > 0) {
                sb.append(new String(buf.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
            }
            return sb.toString();
        } finally {
            Fds.closeQuietly(fd);
        }
    }

    static long rssKib(long pid) throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (l.startsWith("VmRSS:")) {
                return Long.parseLong(l.replaceAll("[^0-9]", ""));
            }
        }
        throw new IOException("no VmRSS for " + pid);
    }

    /** utime + stime of the whole process, in clock ticks. */
    static long cpuTicks(long pid) throws IOException {
        String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[11]) + Long.parseLong(f[12]);
    }

    /** Thread name (as the kernel keeps it, 15 characters) → how many. */
    static Map<String, Integer> threadNames(long pid) throws IOException {
        Map<String, Integer> m = new TreeMap<>();
        try (var tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path t : tasks.toList()) {
                try {
                    m.merge(Files.readString(t.resolve("comm")).strip(), 1, Integer::sum);
                } catch (IOException gone) {
                    // the thread ended meanwhile
                }
            }
        }
        return m;
    }

    /** Voluntary + involuntary context switches per thread name (how often each woke up). */
    static Map<String, Long> contextSwitches(long pid) throws IOException {
        Map<String, Long> m = new TreeMap<>();
        try (var tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path t : tasks.toList()) {
                try {
                    String name = Files.readString(t.resolve("comm")).strip();
                    long n = 0;
                    for (String l : Files.readAllLines(t.resolve("status"))) {
                        if (l.startsWith("voluntary_ctxt_switches:") || l.startsWith("nonvoluntary_ctxt_switches:")) {
                            n += Long.parseLong(l.replaceAll("[^0-9]", ""));
                        }
                    }
                    m.merge(name, n, Long::sum);
                } catch (IOException gone) {
                    // the thread ended meanwhile
                }
            }
        }
        return m;
    }
}
