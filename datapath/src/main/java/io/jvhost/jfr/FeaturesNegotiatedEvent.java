package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** SET_FEATURES accepted: the virtio features the driver and the device use from now on. */
@Name(JvhostEvents.PREFIX + "FeaturesNegotiated")
@Label("Features Negotiated")
@Category({"jvhost", "Session"})
@Description("The front-end acknowledged a set of virtio features (SET_FEATURES)")
@StackTrace(false)
public final class FeaturesNegotiatedEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Features")
    @Description("The virtio feature bits")
    public long features;

    @Label("Feature Names")
    public String names;
}
