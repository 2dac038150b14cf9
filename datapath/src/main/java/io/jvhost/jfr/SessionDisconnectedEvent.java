package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A vhost-user session ended (peer gone, protocol error, or jvhost stopping); the device was reset. */
@Name(JvhostEvents.PREFIX + "SessionDisconnected")
@Label("Session Disconnected")
@Category({"jvhost", "Session"})
@Description("A vhost-user session ended and the device was reset")
@StackTrace(false)
public final class SessionDisconnectedEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Messages")
    @Description("vhost-user messages handled in the session")
    public long messages;
}
