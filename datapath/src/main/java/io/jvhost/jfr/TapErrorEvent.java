package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** The tap refused a write or a read failed with an error other than EAGAIN (the frame is dropped). */
@Name(JvhostEvents.PREFIX + "TapError")
@Label("Tap Error")
@Category({"jvhost", "Tap"})
@Description("A tap read or write failed; the frame was dropped and counted")
@StackTrace(false)
public final class TapErrorEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Queue Pair")
    public int queuePair;

    @Label("Direction")
    public String direction;

    @Label("Error")
    public String error;
}
