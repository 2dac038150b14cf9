package io.jvhost.cli;

import org.junit.jupiter.api.Test;

import java.util.logging.Level;
import java.util.logging.LogRecord;

import static org.junit.jupiter.api.Assertions.assertEquals;

class PlainNumbersFormatterTest {
    @Test
    void numbersArePrintedWithoutGrouping() {
        LogRecord r = new LogRecord(Level.INFO, "{0}: mtu {1}, used.idx {2}, bytes {3}");
        r.setParameters(new Object[] {"vm0", 1500, 1344, 123456789012L});
        assertEquals("vm0: mtu 1500, used.idx 1344, bytes 123456789012", new PlainNumbersFormatter().formatMessage(r));
    }
}
