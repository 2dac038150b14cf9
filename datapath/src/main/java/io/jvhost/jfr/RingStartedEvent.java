package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A vring started: size, addresses, memory and kick were all there and the device took it. */
@Name(JvhostEvents.PREFIX + "RingStarted")
@Label("Ring Started")
@Category({"jvhost", "Ring"})
@Description("A virtqueue started (its worker walks it from now on)")
@StackTrace(false)
public final class RingStartedEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Queue Pair")
    public int queuePair;

    @Label("Direction")
    @Description("rx or tx, as the device sees it")
    public String direction;

    @Label("Size")
    public int size;

    @Label("Base Index")
    @Description("The avail index the device starts at (SET_VRING_BASE)")
    public int base;

    @Label("Enabled")
    public boolean enabled;
}
