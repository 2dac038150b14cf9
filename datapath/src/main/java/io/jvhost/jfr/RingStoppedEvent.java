package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A vring stopped (GET_VRING_BASE, a new kick, a memory table that no longer covers it, session end). */
@Name(JvhostEvents.PREFIX + "RingStopped")
@Label("Ring Stopped")
@Category({"jvhost", "Ring"})
@Description("A virtqueue stopped; the next start resumes at the given avail index")
@StackTrace(false)
public final class RingStoppedEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Queue Pair")
    public int queuePair;

    @Label("Direction")
    public String direction;

    @Label("Base Index")
    @Description("The avail index reported to the front-end")
    public int base;
}
