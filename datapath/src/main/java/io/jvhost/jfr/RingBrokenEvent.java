package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A virtqueue was marked broken: the driver (or the front-end) violated the ring contract. */
@Name(JvhostEvents.PREFIX + "RingBroken")
@Label("Ring Broken")
@Category({"jvhost", "Ring"})
@Description("A virtqueue stopped on a guest or front-end violation until the front-end restarts it")
@StackTrace(false)
public final class RingBrokenEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Queue Pair")
    public int queuePair;

    @Label("Direction")
    public String direction;

    @Label("Reason")
    @Description("The VirtqError name, e.g. BAD_DESC_INDEX or MEMORY_FAULT")
    public String reason;

    @Label("Message")
    public String message;
}
