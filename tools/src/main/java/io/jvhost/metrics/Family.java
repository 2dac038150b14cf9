package io.jvhost.metrics;

import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import org.HdrHistogram.Histogram;

import java.util.List;
import java.util.function.BiConsumer;
import java.util.function.Function;

/**
 * One metric family: a name, a help text, label names and a reader that emits the family's data
 * points from the device samples of a scrape. {@link JvhostMetrics#FAMILIES} lists them all; a new
 * family is one more entry there.
 */
public abstract sealed class Family {
    final String name;
    final String help;
    final String[] labels;

    private Family(String name, String help, String... labels) {
        this.name = name;
        this.help = help;
        this.labels = labels;
    }

    /** Where a reader puts its data points: one value per combination of label values. */
    @FunctionalInterface
    public interface Points {
        void add(double value, String... labelValues);
    }

    /**
     * A counter (exposed as {@code NAME_total}); {@code name} is given without the suffix.
     * {@code read} is called once per device sample.
     */
    public static Family counter(String name, String help, String[] labels, BiConsumer<DeviceSample, Points> read) {
        return new Scalar(name, help, labels, read, true);
    }

    /** A gauge; {@code read} is called once per device sample. */
    public static Family gauge(String name, String help, String[] labels, BiConsumer<DeviceSample, Points> read) {
        return new Scalar(name, help, labels, read, false);
    }

    /**
     * A histogram per queue pair (labels {@code device}, {@code queue}) made at scrape time from an
     * HdrHistogram: classic buckets at {@code bounds} (in the exposed unit; +Inf is added), values
     * divided by {@code scale} (e.g. 1e9 for nanoseconds exposed as seconds).
     */
    public static Family histogram(String name, String help, Function<io.jvhost.stats.QueueStats, Histogram> read,
                                   double[] bounds, double scale) {
        return new Hdr(name, help, read, bounds, scale);
    }

    abstract MetricSnapshot collect(List<DeviceSample> samples);

    private static final class Scalar extends Family {
        private final BiConsumer<DeviceSample, Points> read;
        private final boolean counter;

        Scalar(String name, String help, String[] labels, BiConsumer<DeviceSample, Points> read, boolean counter) {
            super(name, help, labels);
            this.read = read;
            this.counter = counter;
        }

        @Override
        MetricSnapshot collect(List<DeviceSample> samples) {
            if (counter) {
                CounterSnapshot.Builder b = CounterSnapshot.builder().name(name).help(help);
                for (DeviceSample s : samples) {
                    read.accept(s, (v, values) -> b.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder()
                            .value(v).labels(Labels.of(labels, values)).build()));
                }
                return b.build();
            }
            GaugeSnapshot.Builder b = GaugeSnapshot.builder().name(name).help(help);
            for (DeviceSample s : samples) {
                read.accept(s, (v, values) -> b.dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder()
                        .value(v).labels(Labels.of(labels, values)).build()));
            }
            return b.build();
        }
    }

    private static final class Hdr extends Family {
        private final Function<io.jvhost.stats.QueueStats, Histogram> read;
        private final double[] bounds;
        private final double scale;

        Hdr(String name, String help, Function<io.jvhost.stats.QueueStats, Histogram> read, double[] bounds, double scale) {
            super(name, help, "device", "queue");
            this.read = read;
            this.bounds = new double[bounds.length + 1];
            System.arraycopy(bounds, 0, this.bounds, 0, bounds.length);
            this.bounds[bounds.length] = Double.POSITIVE_INFINITY;
            this.scale = scale;
        }

        @Override
        MetricSnapshot collect(List<DeviceSample> samples) {
            HistogramSnapshot.Builder b = HistogramSnapshot.builder().name(name).help(help);
            for (DeviceSample s : samples) {
                for (io.jvhost.stats.QueueStats q : s.queues()) {
                    Histogram h = read.apply(q);
                    if (h == null) {
                        continue;
                    }
                    b.dataPoint(HistogramSnapshot.HistogramDataPointSnapshot.builder()
                            .classicHistogramBuckets(ClassicHistogramBuckets.of(bounds, counts(h)))
                            // HdrHistogram keeps no exact sum: count × mean (each value at its bucket's midpoint).
                            .sum(h.getTotalCount() == 0 ? 0 : h.getMean() * h.getTotalCount() / scale)
                            .labels(Labels.of(labels, new String[]{s.device(), Integer.toString(q.queuePair())}))
                            .build());
                }
            }
            return b.build();
        }

        /** Per-bucket (not cumulative) counts: values in (previous bound, bound]. */
        private long[] counts(Histogram h) {
            long[] out = new long[bounds.length];
            long below = 0;
            for (int i = 0; i < bounds.length - 1; i++) {
                long upTo = h.getCountBetweenValues(0, (long) Math.floor(bounds[i] * scale));
                out[i] = Math.max(0, upTo - below);
                below = Math.max(below, upTo);
            }
            out[bounds.length - 1] = Math.max(0, h.getTotalCount() - below);
            return out;
        }
    }
}
