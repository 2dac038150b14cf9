package io.jvhost.cli;

import io.jvhost.config.Configuration;
import io.jvhost.net.VirtioNetConfig;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Command-line configuration: every option is a named constant with its default, parsed once into
 * typed accessors (Aeron's {@code Configuration} shape). Unknown or malformed options are errors
 * with a message naming the option; nothing is silently ignored. The process-wide tuning knobs are
 * {@link Configuration}'s tunables: each is accepted as {@code --FLAG=VALUE} and listed by
 * {@code --help}; {@link #applyTunables()} turns them into their system properties.
 *
 * <p>Follows the vhost-user "Backend program conventions": {@code --socket-path}, {@code --fd},
 * {@code --print-capabilities}; no daemonising.
 */
public final class Options {
    public static final String SOCKET_PATH = "socket-path";
    public static final String FD = "fd";
    public static final String PRINT_CAPABILITIES = "print-capabilities";
    public static final String TAP = "tap";
    public static final String QUEUES = "queues";
    public static final int QUEUES_DEFAULT = 1;
    public static final int QUEUES_MAX = 16;
    public static final String MTU = "mtu";
    public static final int MTU_DEFAULT = 1500;
    public static final String MAC = "mac";
    public static final String CLIENT = "client";
    public static final String CAPTURE = "capture";
    public static final String TAP_SNDBUF = "tap-sndbuf";
    public static final int TAP_SNDBUF_DEFAULT = 0;
    public static final String DISABLE_FEATURES = "disable-features";
    public static final String QUEUE_AFFINITY = "queue-affinity";
    public static final String METRICS = "metrics";
    public static final String JFR = "jfr";
    public static final String LOG_LEVEL = "log-level";
    public static final String LOG_LEVEL_DEFAULT = "info";
    public static final String STATS_PATH = "stats-path";
    public static final String RING_JOURNAL = "ring-journal";
    public static final String RING_JOURNAL_NONE = "none";
    public static final String WATCH = "watch";
    public static final String INTERVAL = "interval";
    public static final double INTERVAL_DEFAULT = 1.0;
    public static final String COUNT = "count";
    public static final String HELP = "help";

    private static final Map<String, String> HELP_TEXT = new LinkedHashMap<>();

    static {
        HELP_TEXT.put(SOCKET_PATH + "=PATH", "vhost-user unix socket (server: created; with --client: connected to)");
        HELP_TEXT.put(FD + "=N", "use an already listening/connected socket inherited as fd N");
        HELP_TEXT.put(TAP + "=NAME", "tap device to create or attach to (default: jvhost%d)");
        HELP_TEXT.put(QUEUES + "=N", "max queue pairs offered (default " + QUEUES_DEFAULT + ", max " + QUEUES_MAX + ")");
        HELP_TEXT.put(MTU + "=N", "MTU offered to the guest (default " + MTU_DEFAULT + ")");
        HELP_TEXT.put(MAC + "=XX:XX:XX:XX:XX:XX", "MAC in the device config space");
        HELP_TEXT.put(CLIENT, "client mode: connect to the front-end's socket, reconnect when it restarts");
        HELP_TEXT.put(CAPTURE + "=FILE", "write every frame (both directions) to a pcap file");
        HELP_TEXT.put(TAP_SNDBUF + "=BYTES", "cap the tap's send buffer (TUNSETSNDBUF) so a slow host path pushes back"
                + " on the guest instead of queueing without bound (default 0: kernel default, unlimited)");
        HELP_TEXT.put(DISABLE_FEATURES + "=A,B", "switch off virtio features by name (e.g. mrg-rxbuf,event-idx,host-tso4; _ works too)");
        HELP_TEXT.put(QUEUE_AFFINITY + "=DEV:Q=W,...", "place queue pair Q of device DEV (vm0, vm1 ... in --socket-path order)"
                + " on worker W by hand; such a worker then takes no other pairs (default: least loaded)");
        HELP_TEXT.put(METRICS + "=HOST:PORT", "serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9477; default off)");
        HELP_TEXT.put(JFR + "=FILE", "record a JFR flight recording (JDK default settings + jvhost events) into FILE, written at stop");
        HELP_TEXT.put(LOG_LEVEL + "=LEVEL", "error, warn, info, debug or trace (default " + LOG_LEVEL_DEFAULT + ")");
        HELP_TEXT.put(STATS_PATH + "=PATH", "the stats socket (default <socket-path>.stats; with --fd or socket activation: none unless given)");
        HELP_TEXT.put(RING_JOURNAL + "=PATH", "file where packed rings write down where they stopped, so a restarted jvhost"
                + " resumes them although the front-end lost track (default <socket-path>.rings; with --fd or socket"
                + " activation: none unless given; " + RING_JOURNAL_NONE + ": off)");
        HELP_TEXT.put(WATCH, "stats: refresh rates per second in place until Ctrl-C");
        HELP_TEXT.put(INTERVAL + "=SECONDS", "stats --watch: refresh interval (default " + INTERVAL_DEFAULT + ")");
        HELP_TEXT.put(COUNT + "=N", "stats --watch: stop after N refreshes (default 0: never)");
        HELP_TEXT.put(PRINT_CAPABILITIES, "print the back-end capabilities as JSON and exit");
        HELP_TEXT.put(HELP, "this text");
    }

    /** Options that may be given once per device, in the same order. */
    private static final List<String> REPEATABLE = List.of(SOCKET_PATH, TAP, MAC);

    private final Map<String, String> values;
    private final Map<String, List<String>> repeated;
    private final List<String> positional;

    private Options(Map<String, String> values, Map<String, List<String>> repeated, List<String> positional) {
        this.values = values;
        this.repeated = repeated;
        this.positional = positional;
    }

    /** Parses {@code --name=value}, {@code --name value} and {@code --flag}. */
    public static Options parse(String[] args) {
        Map<String, String> values = new LinkedHashMap<>();
        Map<String, List<String>> repeated = new LinkedHashMap<>();
        List<String> positional = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                positional.add(a);
                continue;
            }
            String body = a.substring(2);
            int eq = body.indexOf('=');
            String name = eq < 0 ? body : body.substring(0, eq);
            if (!isKnown(name)) {
                throw new IllegalArgumentException("unknown option --" + name + " (see --help)");
            }
            String value;
            if (eq >= 0) {
                value = body.substring(eq + 1);
            } else if (isFlag(name)) {
                value = "true";
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                throw new IllegalArgumentException("option --" + name + " needs a value");
            }
            if (values.containsKey(name) && !REPEATABLE.contains(name)) {
                throw new IllegalArgumentException("option --" + name + " given twice");
            }
            values.putIfAbsent(name, value);
            repeated.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
        }
        return new Options(values, repeated, positional);
    }

    private static boolean isFlag(String name) {
        Configuration.Tunable<?> t = Configuration.byFlag(name);
        return name.equals(CLIENT) || name.equals(PRINT_CAPABILITIES) || name.equals(HELP) || name.equals(WATCH)
                || t != null && Configuration.isSwitch(t);
    }

    private static boolean isKnown(String name) {
        if (Configuration.byFlag(name) != null) {
            return true;
        }
        for (String k : HELP_TEXT.keySet()) {
            String n = k.contains("=") ? k.substring(0, k.indexOf('=')) : k;
            if (n.equals(name)) {
                return true;
            }
        }
        return false;
    }

    public List<String> positional() {
        return positional;
    }

    public boolean flag(String name) {
        return Boolean.parseBoolean(values.getOrDefault(name, "false"));
    }

    public String string(String name, String dflt) {
        return values.getOrDefault(name, dflt);
    }

    /** Every value of a repeatable option, in command-line order (empty when absent). */
    public List<String> strings(String name) {
        return repeated.getOrDefault(name, List.of());
    }

    public boolean has(String name) {
        return values.containsKey(name);
    }

    public int integer(String name, int dflt, int min, int max) {
        String v = values.get(name);
        if (v == null) {
            return dflt;
        }
        try {
            int n = Integer.parseInt(v.trim());
            if (n < min || n > max) {
                throw new IllegalArgumentException("--" + name + "=" + v + " is out of range [" + min + ", " + max + "]");
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + "=" + v + " is not a number", e);
        }
    }

    /** {@code --interval} in milliseconds, at least 100. */
    public long intervalMillis() {
        String v = values.get(INTERVAL);
        if (v == null) {
            return (long) (INTERVAL_DEFAULT * 1000);
        }
        try {
            double d = Double.parseDouble(v.trim());
            if (!(d >= 0.1 && d <= 3600)) {
                throw new IllegalArgumentException("--" + INTERVAL + "=" + v + " is out of range [0.1, 3600] seconds");
            }
            return Math.round(d * 1000);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + INTERVAL + "=" + v + " is not a number of seconds", e);
        }
    }

    public int queues() {
        return integer(QUEUES, QUEUES_DEFAULT, 1, QUEUES_MAX);
    }

    public int mtu() {
        return integer(MTU, MTU_DEFAULT, VirtioNetConfig.MIN_MTU, VirtioNetConfig.MAX_MTU);
    }

    /**
     * Validates every tunable given on the command line and sets its system property (call before
     * any device is created).
     *
     * @throws IllegalArgumentException naming the flag and what is wrong with its value
     */
    public void applyTunables() {
        for (Configuration.Tunable<?> t : Configuration.ALL) {
            String v = values.get(t.flag());
            if (v != null) {
                Configuration.applyFlag(t.flag(), v);
            }
        }
    }

    /** {@code --queue-affinity} as {@code "<device>:<queue pair>"} → worker index (empty when absent). */
    public java.util.Map<String, Integer> queueAffinity() {
        return io.jvhost.engine.WorkerPool.parseAffinity(values.get(QUEUE_AFFINITY));
    }

    public int tapSndBuf() {
        return integer(TAP_SNDBUF, TAP_SNDBUF_DEFAULT, 0, Integer.MAX_VALUE);
    }

    public List<String> disabledFeatures() {
        String v = values.get(DISABLE_FEATURES);
        List<String> out = new ArrayList<>();
        if (v != null) {
            for (String s : v.split(",")) {
                if (!s.isBlank()) {
                    out.add(s.trim().toLowerCase(Locale.ROOT).replace('_', '-'));
                }
            }
        }
        return out;
    }

    /** The MAC of device {@code index} (the index-th {@code --mac}); null when not given. */
    public byte[] mac(int index) {
        List<String> all = strings(MAC);
        return index < all.size() ? parseMac(all.get(index)) : null;
    }

    /** Parses a MAC like {@code 52:54:00:12:34:56}. */
    static byte[] parseMac(String v) {
        String[] parts = v.split(":");
        if (parts.length != 6) {
            throw new IllegalArgumentException("--mac=" + v + " is not a MAC address (XX:XX:XX:XX:XX:XX)");
        }
        byte[] mac = new byte[6];
        for (int i = 0; i < 6; i++) {
            try {
                mac[i] = (byte) Integer.parseInt(parts[i], 16);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--mac=" + v + " is not a MAC address (XX:XX:XX:XX:XX:XX)", e);
            }
        }
        return mac;
    }

    public static String usage() {
        StringBuilder sb = new StringBuilder();
        sb.append("usage: jvhost [demo]                      run the demo (default with no arguments)\n");
        sb.append("       jvhost --socket-path=PATH [options] run a vhost-user-net back-end\n");
        sb.append("       (--socket-path, --tap and --mac may be repeated: one device per --socket-path, in order)\n");
        sb.append("       jvhost stats --socket-path=PATH [json | --watch]   a running back-end's counters (or rates)\n");
        sb.append("       jvhost --print-capabilities        vhost-user capabilities as JSON\n\noptions:\n");
        for (Map.Entry<String, String> e : HELP_TEXT.entrySet()) {
            sb.append(String.format("  --%-28s %s%n", e.getKey(), e.getValue()));
        }
        sb.append("\ntuning (process-wide; each also a system property, e.g. JVHOST_JAVA_OPTS=-Djvhost.worker.weight=32):\n");
        for (Configuration.Tunable<?> t : Configuration.ALL) {
            sb.append(String.format("  --%-28s %s (default %s; %s)%n", t.flag() + "=" + t.valueHelp(), t.help(),
                    t.defaultForHelp(), t.property()));
        }
        return sb.toString();
    }
}
