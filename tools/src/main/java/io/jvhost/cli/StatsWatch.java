package io.jvhost.cli;

import java.io.PrintStream;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * {@code jvhost stats --watch}: asks the back-end for its counters every interval and shows rates
 * per second for each device and queue pair, redrawn in place on a terminal (cursor home, clear
 * screen) and as successive blocks when the output is a pipe or file.
 *
 * <p>Rates come from two successive answers and the time between them as this client measured it.
 * The latency column is the back-end's cumulative p99 (since start), not the interval's.
 */
final class StatsWatch {
    /** ANSI: cursor to the top left, clear the screen. */
    static final String HOME_CLEAR = "\033[H\033[2J";

    /** One queue pair's counters at one instant. */
    record Sample(String device, int queuePair, Map<String, Long> counters, long drops, double p99Micros) {
    }

    private StatsWatch() {
    }

    /**
     * Refreshes {@code count} times (0: until interrupted) every {@code intervalMs}, reading the
     * back-end's JSON with {@code query} (null when it does not answer).
     */
    static int run(Supplier<String> query, long intervalMs, int count, boolean terminal, PrintStream out)
            throws InterruptedException {
        String first = query.get();
        if (first == null) {
            return 1;
        }
        List<Sample> prev = parse(first);
        long prevAt = System.nanoTime();
        for (int n = 0; count == 0 || n < count; n++) {
            TimeUnit.MILLISECONDS.sleep(intervalMs);
            String json = query.get();
            if (json == null) {
                out.println("jvhost: the back-end stopped answering");
                return 1;
            }
            long now = System.nanoTime();
            List<Sample> cur = parse(json);
            String frame = render(prev, cur, (now - prevAt) / 1e9, intervalMs);
            out.print(terminal ? HOME_CLEAR + frame : frame + System.lineSeparator());
            out.flush();
            prev = cur;
            prevAt = now;
        }
        return 0;
    }

    /** The samples in a {@code jvhost stats json} answer. */
    @SuppressWarnings("unchecked")
    static List<Sample> parse(String json) {
        Map<String, Object> root = (Map<String, Object>) Json.parse(json);
        List<Sample> out = new ArrayList<>();
        for (Object o : (List<Object>) root.get("queues")) {
            Map<String, Object> q = (Map<String, Object>) o;
            Map<String, Long> counters = new LinkedHashMap<>();
            ((Map<String, Object>) q.get("counters")).forEach((k, v) -> counters.put(k, ((Number) v).longValue()));
            long drops = 0;
            for (Object v : ((Map<String, Object>) q.get("drops")).values()) {
                drops += ((Number) v).longValue();
            }
            double p99 = -1;
            Object st = q.get("service_time_ns");
            if (st instanceof Map<?, ?> h && h.get("p99") instanceof Number p) {
                p99 = p.doubleValue() / 1000.0;
            }
            out.add(new Sample((String) q.get("device"), ((Number) q.get("queue_pair")).intValue(), counters, drops, p99));
        }
        return out;
    }

    /** The rates table between two samples {@code seconds} apart. Pure. */
    static String render(List<Sample> prev, List<Sample> cur, double seconds, long intervalMs) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "jvhost stats --watch   every %.1f s   %s   (Ctrl-C to stop)%n",
                intervalMs / 1000.0, Instant.now().truncatedTo(ChronoUnit.SECONDS).toString()));
        b.append(String.format(Locale.ROOT, "%-10s %3s %11s %10s %11s %10s %9s %9s %9s %8s %9s%n", "device", "qp",
                "tx_pkt/s", "tx_Mbit/s", "rx_pkt/s", "rx_Mbit/s", "drops/s", "kicks/s", "calls/s", "pkt/bat", "p99_us"));
        double[] total = new double[7];
        for (Sample c : cur) {
            Sample p = find(prev, c);
            double txp = rate(p, c, "tx_frames", seconds);
            double txb = rate(p, c, "tx_bytes", seconds) * 8 / 1e6;
            double rxp = rate(p, c, "rx_frames", seconds);
            double rxb = rate(p, c, "rx_bytes", seconds) * 8 / 1e6;
            double drops = p == null ? 0 : Math.max(0, c.drops() - p.drops()) / seconds;
            double kicks = rate(p, c, "tx_kicks", seconds) + rate(p, c, "rx_kicks", seconds);
            double calls = rate(p, c, "tx_calls", seconds) + rate(p, c, "rx_calls", seconds);
            double batches = rate(p, c, "tx_batches", seconds) + rate(p, c, "rx_batches", seconds);
            double[] row = {txp, txb, rxp, rxb, drops, kicks, calls};
            for (int i = 0; i < row.length; i++) {
                total[i] += row[i];
            }
            b.append(String.format(Locale.ROOT, "%-10s %3d %11.0f %10.2f %11.0f %10.2f %9.0f %9.0f %9.0f %8s %9s%n",
                    c.device(), c.queuePair(), txp, txb, rxp, rxb, drops, kicks, calls,
                    batches > 0 ? String.format(Locale.ROOT, "%.1f", (txp + rxp) / batches) : "-",
                    c.p99Micros() < 0 ? "-" : String.format(Locale.ROOT, "%.1f", c.p99Micros())));
        }
        if (cur.size() > 1) {
            b.append(String.format(Locale.ROOT, "%-10s %3s %11.0f %10.2f %11.0f %10.2f %9.0f %9.0f %9.0f%n", "total", "",
                    total[0], total[1], total[2], total[3], total[4], total[5], total[6]));
        }
        return b.toString();
    }

    private static Sample find(List<Sample> prev, Sample c) {
        for (Sample p : prev) {
            if (p.device().equals(c.device()) && p.queuePair() == c.queuePair()) {
                return p;
            }
        }
        return null;
    }

    /** Per second; a counter that went backwards (the back-end restarted) counts from zero. */
    private static double rate(Sample p, Sample c, String key, double seconds) {
        long now = c.counters().getOrDefault(key, 0L);
        long before = p == null ? 0 : p.counters().getOrDefault(key, 0L);
        long d = now >= before ? now - before : now;
        return seconds > 0 ? d / seconds : 0;
    }
}
