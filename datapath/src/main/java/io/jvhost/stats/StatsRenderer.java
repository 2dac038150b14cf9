package io.jvhost.stats;

import org.HdrHistogram.Histogram;

import java.util.List;
import java.util.Locale;

/** Renders {@link QueueStats} as a fixed-width table (humans) or JSON (tools). Pure, thread-safe. */
public final class StatsRenderer {
    private StatsRenderer() {
    }

    private static final double[] PERCENTILES = {50, 90, 99, 99.9, 99.99};

    /** One row per queue pair, then one line per non-zero drop reason. */
    public static String table(List<QueueStats> queues) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "%-12s %3s %12s %14s %12s %14s %9s %10s %10s %10s %9s %9s %10s%n",
                "device", "qp", "tx_frames", "tx_bytes", "rx_frames", "rx_bytes", "drops", "kicks", "calls",
                "batches", "p50_us", "p99_us", "max_us"));
        for (QueueStats q : queues) {
            Histogram h = q.serviceTime();
            b.append(String.format(Locale.ROOT, "%-12s %3d %12d %14d %12d %14d %9d %10d %10d %10d %9s %9s %10s%n",
                    q.device(), q.queuePair(), q.get(Counter.TX_FRAMES), q.get(Counter.TX_BYTES),
                    q.get(Counter.RX_FRAMES), q.get(Counter.RX_BYTES), q.totalDrops(),
                    q.get(Counter.TX_KICKS) + q.get(Counter.RX_KICKS), q.get(Counter.TX_CALLS) + q.get(Counter.RX_CALLS),
                    q.get(Counter.TX_BATCHES) + q.get(Counter.RX_BATCHES),
                    micros(h, 50), micros(h, 99), h == null || h.getTotalCount() == 0 ? "-" : us(h.getMaxValue())));
        }
        for (QueueStats q : queues) {
            for (DropReason r : DropReason.values()) {
                if (q.drops(r) != 0) {
                    b.append(String.format(Locale.ROOT, "  %s q%d drop %-18s %d%n", q.device(), q.queuePair(), r, q.drops(r)));
                }
            }
        }
        return b.toString();
    }

    /** Latency percentile table (microseconds) of one histogram of nanoseconds, e.g. for the demo. */
    public static String percentiles(String title, Histogram h) {
        StringBuilder b = new StringBuilder();
        b.append(title).append(String.format(Locale.ROOT, " (%d samples)%n", h.getTotalCount()));
        for (double p : PERCENTILES) {
            b.append(String.format(Locale.ROOT, "  p%-7s %10s us%n", trim(p), us(h.getValueAtPercentile(p))));
        }
        b.append(String.format(Locale.ROOT, "  %-8s %10s us%n", "max", us(h.getMaxValue())));
        return b.toString();
    }

    /**
     * One row per worker: where it runs, the share of its time spent moving frames (busy), polling
     * without finding work (idle) and asleep, its cycles, and the queue pairs it holds.
     */
    public static String workers(List<WorkerStats> workers) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "%-14s %4s %4s %8s %4s %6s %6s %6s %12s %12s %10s %7s  %s%n", "worker", "pin",
                "cpu", "tid", "qps", "busy%", "idle%", "sleep%", "busy_cycles", "idle_cycles", "sleeps", "faults",
                "queue pairs"));
        for (WorkerStats w : workers) {
            long total = w.get(WorkerLoad.BUSY_NANOS) + w.get(WorkerLoad.IDLE_NANOS) + w.get(WorkerLoad.SLEEP_NANOS);
            b.append(String.format(Locale.ROOT, "%-14s %4s %4s %8d %4d %6s %6s %6s %12d %12d %10d %7d  %s%n", w.name(),
                    w.pinnedCpu() < 0 ? "-" : Integer.toString(w.pinnedCpu()),
                    w.lastCpu() < 0 ? "-" : Integer.toString(w.lastCpu()), w.tid(), w.queuePairs().size(),
                    percent(w.get(WorkerLoad.BUSY_NANOS), total), percent(w.get(WorkerLoad.IDLE_NANOS), total),
                    percent(w.get(WorkerLoad.SLEEP_NANOS), total), w.get(WorkerLoad.BUSY_CYCLES),
                    w.get(WorkerLoad.IDLE_CYCLES), w.get(WorkerLoad.SLEEPS), w.get(WorkerLoad.PAIR_FAULTS),
                    w.queuePairs().isEmpty() ? "-" : String.join(", ", w.queuePairs())));
        }
        return b.toString();
    }

    private static String percent(long part, long total) {
        return total == 0 ? "-" : String.format(Locale.ROOT, "%.1f", 100.0 * part / total);
    }

    /** {@code {"queues":[...],"workers":[...]}}: {@link #json(List)}'s queues plus one object per worker. */
    public static String json(List<QueueStats> queues, List<WorkerStats> workers) {
        String q = json(queues);
        StringBuilder b = new StringBuilder(q.substring(0, q.length() - 1)).append(",\"workers\":[");
        for (int i = 0; i < workers.size(); i++) {
            WorkerStats w = workers.get(i);
            if (i > 0) {
                b.append(',');
            }
            b.append("{\"index\":").append(w.index()).append(",\"name\":");
            string(b, w.name());
            b.append(",\"pinned_cpu\":").append(w.pinnedCpu()).append(",\"cpu\":").append(w.lastCpu())
                    .append(",\"tid\":").append(w.tid()).append(",\"queue_pairs\":[");
            for (int k = 0; k < w.queuePairs().size(); k++) {
                if (k > 0) {
                    b.append(',');
                }
                string(b, w.queuePairs().get(k));
            }
            b.append(']');
            for (int k = 0; k < WorkerLoad.COUNT; k++) {
                b.append(",\"").append(WorkerLoad.NAMES.get(k)).append("\":").append(w.get(k));
            }
            b.append('}');
        }
        return b.append("]}").toString();
    }

    public static String json(List<QueueStats> queues) {
        StringBuilder b = new StringBuilder("{\"queues\":[");
        for (int i = 0; i < queues.size(); i++) {
            QueueStats q = queues.get(i);
            if (i > 0) {
                b.append(',');
            }
            b.append("{\"device\":");
            string(b, q.device());
            b.append(",\"queue_pair\":").append(q.queuePair()).append(",\"counters\":{");
            for (Counter c : Counter.values()) {
                if (c.ordinal() > 0) {
                    b.append(',');
                }
                b.append('"').append(c.name().toLowerCase(Locale.ROOT)).append("\":").append(q.get(c));
            }
            b.append("},\"drops\":{");
            for (DropReason r : DropReason.values()) {
                if (r.ordinal() > 0) {
                    b.append(',');
                }
                b.append('"').append(r.name().toLowerCase(Locale.ROOT)).append("\":").append(q.drops(r));
            }
            b.append('}');
            if (q.serviceTime() != null) {
                b.append(",\"service_time_ns\":");
                histogram(b, q.serviceTime());
            }
            if (q.batchSizes() != null) {
                b.append(",\"batch_size\":");
                histogram(b, q.batchSizes());
            }
            b.append('}');
        }
        return b.append("]}").toString();
    }

    private static void histogram(StringBuilder b, Histogram h) {
        b.append("{\"count\":").append(h.getTotalCount());
        if (h.getTotalCount() > 0) {
            b.append(",\"min\":").append(h.getMinValue()).append(",\"mean\":")
                    .append(String.format(Locale.ROOT, "%.1f", h.getMean()));
            for (double p : PERCENTILES) {
                b.append(",\"p").append(trim(p).replace('.', '_')).append("\":").append(h.getValueAtPercentile(p));
            }
            b.append(",\"max\":").append(h.getMaxValue());
        }
        b.append('}');
    }

    private static void string(StringBuilder b, String s) {
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        b.append('"');
    }

    private static String micros(Histogram h, double p) {
        return h == null || h.getTotalCount() == 0 ? "-" : us(h.getValueAtPercentile(p));
    }

    private static String us(long nanos) {
        return String.format(Locale.ROOT, "%.1f", nanos / 1000.0);
    }

    private static String trim(double p) {
        return p == Math.rint(p) ? Long.toString((long) p) : Double.toString(p);
    }
}
