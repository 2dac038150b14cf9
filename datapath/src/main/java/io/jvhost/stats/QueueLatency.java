package io.jvhost.stats;

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
