package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Timespan;

/**
 * One TX or RX batch took longer than the slow-batch threshold ({@code --jfr-slow-batch-us},
 * property {@code jvhost.jfr.slowBatchNanos}) from the kick (or wake-up) to the used-ring publish.
 * Only slow batches create the event object, and only while a recording enables it.
 */
@Name(JvhostEvents.PREFIX + "SlowBatch")
@Label("Slow Batch")
@Category({"jvhost", "Datapath"})
@Description("A TX or RX batch whose service time exceeded the slow-batch threshold")
@StackTrace(false)
public final class SlowBatchEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Queue Pair")
    public int queuePair;

    @Label("Direction")
    public String direction;

    @Label("Frames")
    public int frames;

    @Label("Service Time")
    @Timespan(Timespan.NANOSECONDS)
    public long serviceTime;

    @Label("Threshold")
    @Timespan(Timespan.NANOSECONDS)
    public long threshold;
}
