package io.jvhost.jfr;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/** A guest memory table was mapped and handed to the device (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG). */
@Name(JvhostEvents.PREFIX + "MemoryTableInstalled")
@Label("Memory Table Installed")
@Category({"jvhost", "Session"})
@Description("A new guest memory table is in use by every worker of the device")
@StackTrace(false)
public final class MemoryTableEvent extends jdk.jfr.Event {
    @Label("Device")
    public String device;

    @Label("Regions")
    public int regions;

    @Label("Mapped")
    @DataAmount
    public long bytes;
}
