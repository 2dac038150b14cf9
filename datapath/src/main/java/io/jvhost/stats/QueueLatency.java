package io.jvhost.stats;

import io.jvhost.jfr.JvhostEvents;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.SingleWriterRecorder;

/**
 * Latency and batch-size histograms of one queue pair.
 *
 * <p>The worker records into {@link SingleWriterRecorder}s (wait-free, no allocation: the value
 * range is fixed and values are clamped, so the histogram never resizes). Readers call
 * {@link #serviceTime()} / {@link #batchSizes()}, which swap out the recorder's interval histogram
 * and fold it into a cumulative one; reader methods are synchronized among readers only and never
 * block the worker.
 *
 * <p>{@link #recordBatch(String, long, int)} also reports a batch slower than the threshold given
 * at construction as a JFR event; only such a batch can allocate, and only while a recording wants it.
 */
public final class QueueLatency {
    /** Highest service time kept: 10 s in nanoseconds; anything above is clamped. */
    public static final long MAX_NANOS = 10_000_000_000L;
    /** Largest batch recorded. */
    public static final long MAX_BATCH = 65_536;

    private final SingleWriterRecorder service = new SingleWriterRecorder(1, MAX_NANOS, 3);
    private final SingleWriterRecorder batches = new SingleWriterRecorder(1, MAX_BATCH, 2);
    private final Histogram serviceTotal = new Histogram(1, MAX_NANOS, 3);
    private final Histogram batchTotal = new Histogram(1, MAX_BATCH, 2);
    private Histogram serviceSpare;
    private Histogram batchSpare;
    private final String device;
    private final int queuePair;
    private final long slowBatchNanos;

    /** Histograms not tied to a device (tests, benchmarks): no slow-batch events. */
    public QueueLatency() {
        this("-", 0, Long.MAX_VALUE);
    }

    /**
     * The histograms of queue pair {@code queuePair} of {@code device}; a batch slower than
     * {@code slowBatchNanos} is also a {@link JvhostEvents#slowBatch} event.
     */
    public QueueLatency(String device, int queuePair, long slowBatchNanos) {
        this.device = device;
        this.queuePair = queuePair;
        this.slowBatchNanos = slowBatchNanos;
    }

    /** The device these histograms belong to ("-" when none). */
    public String device() {
        return device;
    }

    /**
     * Worker only: one finished batch of {@code frames} (its {@code direction}, {@link JvhostEvents#RX} or
     * {@link JvhostEvents#TX}) that took {@code nanos} from the kick to the used-ring publish.
     */
    public void recordBatch(String direction, long nanos, int frames) {
        recordService(nanos);
        recordBatch(frames);
        if (nanos > slowBatchNanos) {
            JvhostEvents.slowBatch(device, queuePair, direction, frames, nanos, slowBatchNanos);
        }
    }

    /** Worker only: time from the kick (or wake-up) to the used-ring publish. */
    public void recordService(long nanos) {
        service.recordValue(Math.max(1, Math.min(nanos, MAX_NANOS)));
    }

    /** Worker only: frames handled in one batch (0 is not recorded). */
    public void recordBatch(int frames) {
        if (frames > 0) {
            batches.recordValue(Math.min(frames, MAX_BATCH));
        }
    }

    /** Any thread: cumulative service-time histogram since creation (a copy). */
    public synchronized Histogram serviceTime() {
        serviceSpare = service.getIntervalHistogram(serviceSpare);
        serviceTotal.add(serviceSpare);
        return serviceTotal.copy();
    }

    /** Any thread: cumulative batch-size histogram since creation (a copy). */
    public synchronized Histogram batchSizes() {
        batchSpare = batches.getIntervalHistogram(batchSpare);
        batchTotal.add(batchSpare);
        return batchTotal.copy();
    }
}
