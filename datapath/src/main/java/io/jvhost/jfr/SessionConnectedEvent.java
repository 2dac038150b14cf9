package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A vhost-user front-end connected (server: accepted; client mode: connected to it). */
@Name(JvhostEvents.PREFIX + "SessionConnected")
@Label("Session Connected")
@Category({"jvhost", "Session"})
@Description("A vhost-user front-end connected to the device")
@StackTrace(false)
public final class SessionConnectedEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;
}
