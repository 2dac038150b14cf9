package io.jvhost.config;

import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * Every tuning knob of the process, defined once (Aeron's {@code Configuration} is the shape): a
 * {@link Tunable} constant holds the command-line flag, the system property, the default, the
 * bounds and the help text, and {@link Tunable#get()} is its one typed accessor. The CLI accepts
 * {@code --FLAG=VALUE} for each and turns it into the property before any device starts
 * ({@link #applyFlag}); {@code JVHOST_JAVA_OPTS=-DPROPERTY=VALUE} works as well.
 *
 * <p>The values are read when the code that uses them is first loaded or a device is created:
 * set them before that. Threading: any thread.
 */
public final class Configuration {
    private Configuration() {
    }

    /**
     * One tunable.
     *
     * @param flag     command-line flag name (without {@code --})
     * @param property system property holding the value (in {@code unit}s × {@code scale})
     * @param dflt     default, in property units
     * @param scale    property value = flag value × scale (e.g. µs on the command line, ns in the property)
     * @param min      smallest flag value
     * @param max      largest flag value
     * @param valueHelp how the value is written on the command line (e.g. {@code N}, {@code uring|syscalls})
     * @param help     one line for {@code --help}
     */
    public record Tunable<T>(String flag, String property, T dflt, long scale, long min, long max, String valueHelp,
                             String help, Function<String, T> parser) {

        /** The current value: the system property if set (validated), else the default. */
        public T get() {
            String v = System.getProperty(property);
            if (v == null || v.isBlank()) {
                return dflt;
            }
            try {
                return parser.apply(v.strip());
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(property + "=" + v + ": " + e.getMessage(), e);
            }
        }

        /** The value as given on the command line, converted to the property's form; throws when invalid. */
        String fromFlag(String value) {
            if (dflt instanceof Boolean) {
                String b = value.strip().toLowerCase(Locale.ROOT);
                if (!b.equals("true") && !b.equals("false")) {
                    throw new IllegalArgumentException("--" + flag + "=" + value + ": expected true or false");
                }
                return b;
            }
            if (dflt instanceof Number) {
                long n;
                try {
                    n = Long.parseLong(value.strip());
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("--" + flag + "=" + value + " is not a number", e);
                }
                if (n < min || n > max) {
                    throw new IllegalArgumentException("--" + flag + "=" + value + " is out of range [" + min + ", "
                            + max + "]");
                }
                return Long.toString(Math.multiplyExact(n, scale));
            }
            try {
                parser.apply(value.strip());
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--" + flag + "=" + value + ": " + e.getMessage(), e);
            }
            return value.strip();
        }

        /** The default as the command line writes it. */
        public String defaultForHelp() {
            return dflt instanceof Number n ? Long.toString(n.longValue() / scale) : String.valueOf(dflt);
        }
    }

    private static Tunable<Integer> intTunable(String flag, String property, int dflt, int min, int max, String help) {
        return new Tunable<>(flag, property, dflt, 1, min, max, "N", help, v -> {
            int n = Integer.parseInt(v);
            if (n < min || n > max) {
                throw new IllegalArgumentException("out of range [" + min + ", " + max + "]");
            }
            return n;
        });
    }

    private static Tunable<Long> longTunable(String flag, String property, long dflt, long scale, long min, long max,
                                             String valueHelp, String help) {
        return new Tunable<>(flag, property, dflt, scale, min, max, valueHelp, help, v -> {
            long n = Long.parseLong(v);
            if (n < min * scale || n > max * scale) {
                throw new IllegalArgumentException("out of range [" + min * scale + ", " + max * scale + "]");
            }
            return n;
        });
    }

    private static Tunable<Boolean> boolTunable(String flag, String property, String help) {
        return new Tunable<>(flag, property, false, 1, 0, 1, "true|false", help, v -> {
            String b = v.toLowerCase(Locale.ROOT);
            if (!b.equals("true") && !b.equals("false")) {
                throw new IllegalArgumentException("expected true or false");
            }
            return Boolean.parseBoolean(b);
        });
    }

    /** Frames per ring per worker duty cycle, so one direction or queue cannot starve another (vhost-net's weight). */
    public static final Tunable<Integer> WEIGHT = intTunable("weight", "jvhost.worker.weight", 64, 1, 65536,
            "frames per ring per worker cycle (fairness between rings)");

    /** How long an idle worker keeps polling before it sleeps in epoll (vhost-net's busyloop_timeout), in ns. */
    public static final Tunable<Long> BUSY_POLL_NANOS = longTunable("busy-poll-us", "jvhost.worker.busyPollNanos", 0,
            1000, 0, 10_000_000, "N", "busy-poll the rings N microseconds before sleeping (0: off)");

    /**
     * Adaptive spin before sleeping, in ns: when one of the last 8 idle gaps was shorter than this,
     * the idle worker polls this long before it sleeps — a request/response guest answers within
     * a few µs, far less than a blocking wake-up across cores costs. 0: off.
     */
    public static final Tunable<Long> ADAPTIVE_SPIN_NANOS = longTunable("adaptive-spin-us",
            "jvhost.worker.adaptiveSpinNanos", 50_000, 1000, 0, 10_000_000, "N",
            "poll N microseconds before sleeping when recent idle gaps were shorter (0: off)");

    /** How long a control thread waits for a worker to acknowledge a command, in ms. */
    public static final Tunable<Long> ACK_TIMEOUT_MS = longTunable("ack-timeout-ms", "jvhost.worker.ackTimeoutMs",
            5_000, 1, 1, 600_000, "N", "how long the control thread waits for a worker's acknowledgement");

    /** How the engines reach the tap: {@code uring} (batched submissions) or {@code syscalls} (one per frame). */
    public static final Tunable<String> TAP_IO = new Tunable<>("tap-io", "jvhost.tap.io", "uring", 1, 0, 0,
            "uring|syscalls", "tap I/O: io_uring batches (falls back when unavailable) or one system call per frame",
            v -> switch (v.toLowerCase(Locale.ROOT)) {
                case "uring", "io_uring" -> "uring";
                case "syscalls", "syscall" -> "syscalls";
                default -> throw new IllegalArgumentException("expected uring or syscalls");
            });

    /** Whether RX single-buffer reads are batched through io_uring (off: no measurable gain end to end). */
    public static final Tunable<Boolean> RX_URING_BATCH = boolTunable("rx-uring-batch", "jvhost.rx.uringBatch",
            "batch RX single-buffer reads through io_uring (default false)");

    /** A TX batch is submitted and published once it holds this many frame bytes (GSO frames). */
    public static final Tunable<Long> TX_PUBLISH_BYTES = longTunable("tx-publish-bytes", "jvhost.tx.publishBytes",
            256 * 1024, 1, 1, 1L << 30, "BYTES", "publish TX buffers every BYTES of frames within a batch");

    /** io_uring TX: do not register the tap as a fixed file (A/B switch). */
    public static final Tunable<Boolean> TAP_URING_NO_FIXED = boolTunable("tap-uring-no-fixed",
            "jvhost.tap.uringNoFixed", "io_uring TX: plain tap fd instead of a registered fixed file (default false)");

    /** io_uring TX: WRITEV even for one-buffer frames (A/B switch). */
    public static final Tunable<Boolean> TAP_URING_NO_PLAIN_WRITE = boolTunable("tap-uring-no-plain-write",
            "jvhost.tap.uringNoPlainWrite", "io_uring TX: WRITEV for one-buffer frames instead of WRITE (default false)");

    /** Native calls marked "never blocks" linked critical (the property native-bindings reads itself). */
    public static final Tunable<Boolean> NATIVE_CRITICAL = boolTunable("native-critical", "jvhost.native.critical",
            "link never-blocking native calls as critical (default false)");

    /** Non-blocking tap readv/writev linked critical (the property native-bindings reads itself). */
    public static final Tunable<Boolean> NATIVE_CRITICAL_NONBLOCKING = boolTunable("native-critical-nonblocking",
            "jvhost.native.criticalNonBlocking", "link non-blocking tap readv/writev as critical (default false)");

    /**
     * Worker threads shared by every device's queue pairs (OVS-DPDK's PMD threads). 0: one per queue
     * pair in use, up to the CPUs the process may use (or up to the {@link #CPUS} given).
     */
    public static final Tunable<Integer> WORKERS = intTunable("workers", "jvhost.pool.workers", 0, 0, 4096,
            "worker threads for all devices' queue pairs (0: one per queue pair, up to the CPUs available)");

    /**
     * CPUs the workers are pinned to, one CPU per worker in turn (Linux cpu-list, e.g. {@code 0-3,8};
     * OVS-DPDK's {@code pmd-cpu-mask}). Empty: not pinned.
     */
    public static final Tunable<String> CPUS = new Tunable<>("cpus", "jvhost.pool.cpus", "", 1, 0, 0, "LIST",
            "pin the workers, one CPU each in turn (cpu-list like 0-3,8; default: not pinned)",
            v -> CpuList.format(CpuList.parse(v)));

    /** JFR: a TX or RX batch slower than this (kick to used-ring publish), in ns, is an io.jvhost.SlowBatch event. */
    public static final Tunable<Long> SLOW_BATCH_NANOS = longTunable("jfr-slow-batch-us", "jvhost.jfr.slowBatchNanos",
            1_000_000, 1000, 0, 10_000_000, "N", "JFR: record batches slower than N microseconds as SlowBatch events");

    /** Every tunable, in the order {@code --help} lists them. */
    public static final List<Tunable<?>> ALL = List.of(WEIGHT, BUSY_POLL_NANOS, ADAPTIVE_SPIN_NANOS, ACK_TIMEOUT_MS,
            WORKERS, CPUS, TAP_IO, RX_URING_BATCH, TX_PUBLISH_BYTES, TAP_URING_NO_FIXED, TAP_URING_NO_PLAIN_WRITE,
            NATIVE_CRITICAL, NATIVE_CRITICAL_NONBLOCKING, SLOW_BATCH_NANOS);

    /** The tunable with command-line flag {@code flag}, or null. */
    public static Tunable<?> byFlag(String flag) {
        for (Tunable<?> t : ALL) {
            if (t.flag().equals(flag)) {
                return t;
            }
        }
        return null;
    }

    /**
     * Applies {@code --flag=value}: validates it and sets the tunable's system property. Call before
     * any device is created.
     *
     * @throws IllegalArgumentException for an unknown flag or an invalid value (the message names both)
     */
    public static void applyFlag(String flag, String value) {
        Tunable<?> t = byFlag(flag);
        if (t == null) {
            throw new IllegalArgumentException("unknown tunable --" + flag);
        }
        System.setProperty(t.property(), t.fromFlag(value));
    }

    /** Whether the tunable is a switch ({@code --flag} alone means true). */
    public static boolean isSwitch(Tunable<?> t) {
        return t.dflt() instanceof Boolean;
    }
}
