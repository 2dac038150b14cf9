package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/**
 * Dirty-page logging (live migration: SET_FEATURES with F_LOG_ALL and SET_LOG_BASE) switched on or
 * off. Emitted through {@link JvhostEvents#dirtyLog} by whatever installs the log.
 */
@Name(JvhostEvents.PREFIX + "DirtyLog")
@Label("Dirty Logging")
@Category({"jvhost", "Session"})
@Description("Dirty-page logging for live migration started or stopped")
@StackTrace(false)
public final class DirtyLogEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("On")
    public boolean on;

    @Label("Log Size")
    @DataAmount
    public long logBytes;
}
