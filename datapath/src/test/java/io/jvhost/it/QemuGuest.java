package io.jvhost.it;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A Linux guest in QEMU (TCG) whose virtio-net device is backed over vhost-user by the back-end
 * under test: starts {@code tools/guest-vm}, collects the serial console and waits for the
 * {@code JVHOST-<WORD> fields} marker lines that the guest's init ({@code tools/guest/init}) prints.
 *
 * <pre>{@code
 * try (QemuGuest g = QemuGuest.builder(socket).cmdline("jvhost.run=ping,serve").start()) {
 *     g.awaitMarker("PING", Duration.ofMinutes(3)).field("rc");
 * }
 * }</pre>
 *
 * <p>Boot takes 6 s on an idle machine and a minute or more on a loaded one (TCG, no KVM): give
 * the first marker a generous timeout ({@link #BOOT_TIMEOUT}). Markers: BOOT, DRIVER, MAC, QUEUES,
 * FEATURES, READY, STEP, PING, TX-MD5, TCP-SENT, LISTENING, RX-MD5, SERVING, STEP-FAILED, ERROR, DONE.
 *
 * <p>Threading: the output is read on a virtual thread; the await methods may be called from any
 * one test thread (the per-word cursors are not meant for concurrent consumers).
 */
public final class QemuGuest implements AutoCloseable {
    /** Enough for a TCG boot on a machine shared with other busy processes. */
    public static final Duration BOOT_TIMEOUT = Duration.ofSeconds(Long.getLong("jvhost.it.bootTimeoutSeconds", 240));
    /** The addresses the guest's init defaults to (host side 10.77.0.1, guest 10.77.0.2). */
    public static final String HOST_IP = "10.77.0.1";
    public static final String GUEST_IP = "10.77.0.2";

    private static final String PREFIX = "JVHOST-";
    private static volatile Image image;

    private final LineProcess proc;
    private final Map<String, Integer> cursors = new HashMap<>();

    /** The kernel and initramfs built by tools/build-guest-image. */
    public record Image(Path kernel, Path initrd) {
    }

    /** One marker line: {@code JVHOST-WORD rest}; {@code rest} is space-separated tokens, some {@code key=value}. */
    public record Marker(String word, String rest, int line) {
        /** The value of {@code key=value} in the fields, or null. */
        public String field(String key) {
            for (String t : rest.split("\\s+")) {
                if (t.startsWith(key + "=")) {
                    return t.substring(key.length() + 1);
                }
            }
            return null;
        }

        public int intField(String key) {
            String v = field(key);
            if (v == null) {
                throw new AssertionError("marker " + word + " has no " + key + "=: " + rest);
            }
            return Integer.parseInt(v);
        }

        /** The first token (e.g. the MD5 of TX-MD5/RX-MD5, the bit string of FEATURES). */
        public String first() {
            String r = rest.strip();
            int sp = r.indexOf(' ');
            return sp < 0 ? r : r.substring(0, sp);
        }
    }

    private QemuGuest(LineProcess proc) {
        this.proc = proc;
    }

    /**
     * Builds the guest image once per JVM (cached on disk by the script) and returns it; throws
     * with the script's output when that fails (no package lists, no network on a cold cache).
     */
    public static Image image() {
        Image i = image;
        if (i == null) {
            synchronized (QemuGuest.class) {
                i = image;
                if (i == null) {
                    Cmd.Result r = Cmd.run(Duration.ofMinutes(10), Cmd.tool("build-guest-image").toString());
                    String out = r.orThrow().output();
                    Path k = null;
                    Path d = null;
                    for (String l : out.split("\n")) {
                        if (l.startsWith("kernel=")) {
                            k = Path.of(l.substring(7).strip());
                        } else if (l.startsWith("initrd=")) {
                            d = Path.of(l.substring(7).strip());
                        }
                    }
                    if (k == null || d == null) {
                        throw new IllegalStateException("build-guest-image printed no paths:\n" + out);
                    }
                    image = i = new Image(k, d);
                }
            }
        }
        return i;
    }

    /**
     * Why a guest cannot run here, or null when it can: QEMU missing, or the image cannot be built.
     * For {@code Assumptions.assumeTrue(QemuGuest.unavailableReason() == null, ...)}.
     */
    public static String unavailableReason() {
        if (!Cmd.onPath("qemu-system-x86_64")) {
            return "qemu-system-x86_64 not installed (tools/install-deps)";
        }
        try {
            image();
            return null;
        } catch (RuntimeException e) {
            return "guest image cannot be built: " + e.getMessage();
        }
    }

    public static Builder builder(Path socket) {
        return new Builder(socket);
    }

    /** Options of tools/guest-vm. */
    public static final class Builder {
        private final Path socket;
        private boolean server;
        private int queues = 1;
        private String mac = "52:54:00:77:00:02";
        private int hostMtu;
        private boolean packed;
        private final Map<String, String> params = new LinkedHashMap<>();
        private String extraCmdline = "";
        private String mem = "512M";
        private String name = "guest";
        private final List<String> qemuArgs = new ArrayList<>();

        private Builder(Path socket) {
            this.socket = socket;
        }

        /** QEMU listens on the socket (the back-end connects as a client and reconnects). */
        public Builder server(boolean on) {
            this.server = on;
            return this;
        }

        public Builder queues(int n) {
            this.queues = n;
            return this;
        }

        public Builder mac(String m) {
            this.mac = m;
            return this;
        }

        /**
         * QEMU offers VIRTIO_NET_F_MTU with this MTU ({@code host_mtu=}) and sends NET_SET_MTU to
         * the back-end; without it QEMU masks the MTU feature whatever the back-end offers.
         */
        public Builder hostMtu(int mtu) {
            this.hostMtu = mtu;
            return this;
        }

        /** QEMU offers packed virtqueues ({@code packed=on}); the guest uses them when the back-end offers them too. */
        public Builder packed(boolean on) {
            this.packed = on;
            return this;
        }

        /** Sets {@code jvhost.<key>=<value>} on the kernel command line (run, ip, peer, mtu, mib, port, count, timeout). */
        public Builder param(String key, Object value) {
            params.put(key, String.valueOf(value));
            return this;
        }

        /** The guest's steps, e.g. {@code run("ping", "tcp-send", "serve")}. */
        public Builder run(String... steps) {
            return param("run", String.join(",", steps));
        }

        /** Anything else for the kernel command line. */
        public Builder cmdline(String more) {
            this.extraCmdline = more;
            return this;
        }

        public Builder mem(String size) {
            this.mem = size;
            return this;
        }

        /** More QEMU arguments (after tools/guest-vm's own), e.g. {@code -qmp ...} or {@code -incoming ...}. */
        public Builder qemuArgs(String... args) {
            qemuArgs.addAll(List.of(args));
            return this;
        }

        /** Names the serial log file (target/it-logs/NAME-&lt;random&gt;.serial.log). */
        public Builder name(String n) {
            this.name = n;
            return this;
        }

        public QemuGuest start() throws IOException {
            Image img = image();
            StringBuilder cl = new StringBuilder();
            params.forEach((k, v) -> cl.append("jvhost.").append(k).append('=').append(v).append(' '));
            cl.append(extraCmdline);
            List<String> cmd = new ArrayList<>(List.of(Cmd.tool("guest-vm").toString(),
                    "--socket", socket.toString(), "--queues", Integer.toString(queues), "--mac", mac,
                    "--mem", mem, "--kernel", img.kernel().toString(), "--initrd", img.initrd().toString(),
                    "--cmdline", cl.toString().strip()));
            if (server) {
                cmd.add("--server");
            }
            if (hostMtu > 0) {
                cmd.addAll(List.of("--host-mtu", Integer.toString(hostMtu)));
            }
            if (packed) {
                cmd.add("--packed");
            }
            if (!qemuArgs.isEmpty()) {
                cmd.add("--");
                cmd.addAll(qemuArgs);
            }
            Path log = Cmd.logDir().resolve(name + "-" + Cmd.randomHex(3) + ".serial.log");
            return new QemuGuest(LineProcess.start("qemu[" + name + "]", cmd, log));
        }
    }

    /**
     * Returns the next not yet returned {@code JVHOST-word} marker (each word has its own cursor, so
     * repeated markers such as RX-MD5 come one per call). Fails at once when the guest reports
     * DONE or a failed step first, or QEMU exits.
     */
    public Marker awaitMarker(String word, Duration timeout) throws InterruptedException {
        String tag = PREFIX + word;
        int from = cursors.getOrDefault(word, 0);
        int i = proc.awaitLine(l -> matches(l, tag) || (!word.equals("DONE") && matches(l, PREFIX + "DONE")),
                from, timeout, "marker " + tag);
        String line = proc.lines().get(i);
        if (!matches(line, tag)) {
            throw new AssertionError("guest finished before " + tag + "\n" + proc.tail(40));
        }
        cursors.put(word, i + 1);
        int at = line.indexOf(tag);
        return new Marker(word, line.substring(at + tag.length()).strip(), i);
    }

    private static boolean matches(String line, String tag) {
        // A marker word ends at a space or the end of line: "JVHOST-STEP" must not match "JVHOST-STEP-FAILED".
        int at = line.indexOf(tag);
        if (at < 0) {
            return false;
        }
        int end = at + tag.length();
        return end == line.length() || line.charAt(end) == ' ';
    }

    /**
     * The guest source's TX-MD5 marker for the stream the host read: {@code md5} when one of the
     * markers printed from the next one on carries it, else the next one (and the caller's
     * assertion fails on it). The source prints a marker for every connection it accepts; when the
     * host's first connection ended with nothing (a slow guest under load), {@link NetNs#receive}
     * connects again and the stream it reads is a later connection's, announced by a later marker.
     */
    public Marker awaitSourceMarker(String md5, Duration timeout) throws InterruptedException {
        Marker next = awaitMarker("TX-MD5", timeout);
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!md5.equals(next.first()) && System.nanoTime() < deadline) {
            for (Marker m : markers("TX-MD5")) {
                if (m.line() > next.line() && md5.equals(m.first())) {
                    cursors.put("TX-MD5", m.line() + 1);
                    return m;
                }
            }
            Thread.sleep(100);
        }
        return next;
    }

    /** All {@code JVHOST-word} markers seen so far. */
    public List<Marker> markers(String word) {
        String tag = PREFIX + word;
        List<Marker> out = new ArrayList<>();
        List<String> lines = proc.lines();
        for (int i = 0; i < lines.size(); i++) {
            if (matches(lines.get(i), tag)) {
                String l = lines.get(i);
                out.add(new Marker(word, l.substring(l.indexOf(tag) + tag.length()).strip(), i));
            }
        }
        return out;
    }

    /**
     * Waits for the FEATURES marker and returns the negotiated virtio feature bits (the guest's
     * /sys/class/net/eth0/device/features: one character per bit, bit 0 first).
     */
    public long awaitFeatures(Duration timeout) throws InterruptedException {
        return parseFeatureBits(awaitMarker("FEATURES", timeout).first());
    }

    static long parseFeatureBits(String bits) {
        long f = 0;
        for (int b = 0; b < bits.length() && b < 64; b++) {
            char c = bits.charAt(b);
            if (c == '1') {
                f |= 1L << b;
            } else if (c != '0') {
                throw new IllegalArgumentException("not a feature bit string: " + bits);
            }
        }
        return f;
    }

    /** Waits for DONE and for QEMU to exit; returns the guest's rc. */
    public int awaitDone(Duration timeout) throws InterruptedException {
        long t0 = System.nanoTime();
        int rc = awaitMarker("DONE", timeout).intField("rc");
        proc.awaitExit(timeout.minusNanos(System.nanoTime() - t0).plusSeconds(30));
        return rc;
    }

    /** Types a line on the serial console (for the {@code shell} step: commands run as root in the guest). */
    public void sendLine(String line) throws IOException {
        var in = proc.stdin();
        in.write((line + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
        in.flush();
    }

    /** The serial console (and QEMU's own messages) so far. */
    public List<String> output() {
        return proc.lines();
    }

    public String tail(int n) {
        return proc.tail(n);
    }

    public Path log() {
        return proc.log();
    }

    public boolean isAlive() {
        return proc.isAlive();
    }

    /** QEMU's process id (tools/guest-vm execs QEMU). */
    public long pid() {
        return proc.process().pid();
    }

    /** Ends QEMU (SIGTERM, then SIGKILL) — the guest is gone as if its power was cut. */
    @Override
    public void close() {
        proc.close();
    }
}
