package io.jvhost.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Instant;
import java.util.concurrent.atomic.AtomicReference;
import java.util.logging.Level;
import java.util.logging.LogRecord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LogLineFormatterTest {
    private static final Instant AT = Instant.parse("2026-01-05T10:15:02.123456Z");

    private static LogRecord record(Level level, String pattern, Object... params) {
        LogRecord r = new LogRecord(level, pattern);
        r.setParameters(params);
        r.setInstant(AT);
        return r;
    }

    /** Formats on a thread with the given name, as the console handler formats on the logging thread. */
    private static String onThread(String name, LogLineFormatter f, LogRecord r) throws InterruptedException {
        AtomicReference<String> out = new AtomicReference<>();
        Thread t = Thread.ofPlatform().name(name).start(() -> out.set(f.format(r)));
        t.join();
        return out.get();
    }

    @Test
    void numbersArePrintedWithoutGrouping() {
        LogRecord r = new LogRecord(Level.INFO, "{0}: mtu {1}, used.idx {2}, bytes {3}");
        r.setParameters(new Object[] {"vm0", 1500, 1344, 123456789012L});
        assertEquals("vm0: mtu 1500, used.idx 1344, bytes 123456789012", new LogLineFormatter().formatMessage(r));
    }

    @Test
    @Timeout(10)
    void oneLineWithTimeLevelSourceAndMessage() throws InterruptedException {
        LogLineFormatter f = new LogLineFormatter();
        assertEquals("2026-01-05T10:15:02.123Z WARN  vm0/q1 q1 TX: tap refused a frame" + System.lineSeparator(),
                onThread("jvhost-vm0-q1", f, record(Level.WARNING, "q{0} TX: tap refused a frame", 1)));
        assertEquals("2026-01-05T10:15:02.123Z INFO  vm0 front-end connected" + System.lineSeparator(),
                onThread("jvhost-vm0-ctl", f, record(Level.INFO, "{0}: front-end connected", "vm0")));
        assertEquals("2026-01-05T10:15:02.123Z DEBUG vm0/q0 ring stopped" + System.lineSeparator(),
                onThread("jvhost-vm0-q0", f, record(Level.FINE, "{0}: ring stopped", "jvhost-vm0-q0")));
        // Not a device thread: a known device's name at the start of the message is the source.
        LogLineFormatter.knownDevice("vmx");
        assertEquals("2026-01-05T10:15:02.123Z ERROR vmx/tx2 virtqueue broken | detail" + System.lineSeparator(),
                onThread("main", f, record(Level.SEVERE, "{0}: virtqueue broken\ndetail", "vmx tx2")));
        assertEquals("2026-01-05T10:15:02.123Z WARN  vm0/rx0 virtqueue broken" + System.lineSeparator(),
                onThread("jvhost-vm0-q0", f, record(Level.WARNING, "{0}: virtqueue broken", "vm0 rx0")));
        assertEquals("2026-01-05T10:15:02.123Z INFO  - jvhost: stopped" + System.lineSeparator(),
                onThread("main", f, record(Level.INFO, "jvhost: stopped")));
    }

    @Test
    @Timeout(10)
    void exceptionsStayOnTheLineUnlessDebugging() throws InterruptedException {
        LogRecord r = record(Level.SEVERE, "{0}: worker cycle failed", "vm0");
        r.setThrown(new IllegalStateException("outer", new java.io.IOException("inner")));
        String line = onThread("jvhost-vm0-q0", new LogLineFormatter(false), r);
        assertEquals("2026-01-05T10:15:02.123Z ERROR vm0/q0 worker cycle failed; java.lang.IllegalStateException: outer;"
                + " caused by java.io.IOException: inner" + System.lineSeparator(), line);
        String debug = onThread("jvhost-vm0-q0", new LogLineFormatter(true), r);
        assertTrue(debug.startsWith(line) && debug.contains("\n    java.lang.IllegalStateException: outer"), debug);
    }

    @Test
    void levels() {
        assertEquals(Level.FINE, LogLineFormatter.parseLevel("debug"));
        assertEquals(Level.WARNING, LogLineFormatter.parseLevel("WARN"));
        assertThrows(IllegalArgumentException.class, () -> LogLineFormatter.parseLevel("loud"));
        assertEquals("TRACE", LogLineFormatter.level(Level.FINER));
    }
}
