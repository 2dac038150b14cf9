package io.jvhost.cli;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArraySet;
import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * jvhost's log format: one line per event, {@code TIME LEVEL SOURCE MESSAGE}, e.g.
 * <pre>2026-01-05T10:15:02.123Z WARN  vm0/q1 q1 TX: tap refused a frame (...): check that the tap is up ...</pre>
 * <ul>
 *   <li>TIME: ISO-8601, UTC, milliseconds.</li>
 *   <li>LEVEL: ERROR, WARN, INFO, DEBUG, TRACE (System.Logger's names, not java.util.logging's).</li>
 *   <li>SOURCE: the device ({@code vm0}), a queue pair ({@code vm0/q1}) or a ring ({@code vm0/rx1}),
 *       taken from the thread ({@code jvhost-vm0-ctl}, {@code jvhost-vm0-q1}) or from a message that
 *       starts with a known device's name or ring ({@code "vm0 rx1: "}); {@code -} for the process as a
 *       whole. That leading name is removed from the message (the column says it).</li>
 *   <li>MESSAGE: numbers without locale grouping ({@code mtu 1500}, not {@code mtu 1,500}); line
 *       breaks become {@code " | "}. An exception is appended as {@code "; Type: message"} with its
 *       causes; its stack trace follows on indented lines only at DEBUG and below.</li>
 * </ul>
 * Formatting runs on the logging thread (the console handler formats synchronously), which is
 * what lets the source come from the thread name.
 */
final class LogLineFormatter extends Formatter {
    private static final DateTimeFormatter TIME =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", Locale.ROOT).withZone(ZoneOffset.UTC);
    private static final Pattern WORKER = Pattern.compile("jvhost-(.+)-q(\\d+)");
    private static final Pattern CONTROL = Pattern.compile("jvhost-(.+)-ctl");
    /** "vm0: ", "vm0 tx1: " or "jvhost-vm0-q1: " at the start of a message. */
    private static final Pattern PREFIX = Pattern.compile("^(?:jvhost-)?([A-Za-z0-9_.%-]+?)(?:-q(\\d+)| ([tr]x)(\\d+))?: ");
    /** Device names the CLI created (vm0, vm1, ...): message prefixes are matched against these only. */
    private static final Set<String> DEVICES = new CopyOnWriteArraySet<>();

    private final boolean stackTraces;

    LogLineFormatter(boolean stackTraces) {
        this.stackTraces = stackTraces;
    }

    LogLineFormatter() {
        this(false);
    }

    /** Makes {@code name} recognisable at the start of messages logged outside the device's threads. */
    static void knownDevice(String name) {
        DEVICES.add(name);
    }

    @Override
    public String format(LogRecord r) {
        String message = formatMessage(r).replaceAll("\\R", " | ");
        String source = "-";
        String thread = Thread.currentThread().getName();
        Matcher m;
        String device = null;
        if ((m = WORKER.matcher(thread)).matches()) {
            device = m.group(1);
            source = device + "/q" + m.group(2);
        } else if ((m = CONTROL.matcher(thread)).matches()) {
            device = m.group(1);
            source = device;
        }
        Matcher p = PREFIX.matcher(message);
        if (p.find() && (p.group(1).equals(device) || DEVICES.contains(p.group(1)))) {
            if (p.group(3) != null) {
                source = p.group(1) + "/" + p.group(3) + p.group(4); // a ring: vm0/rx0
            } else if (device == null) {
                source = p.group(1) + (p.group(2) != null ? "/q" + p.group(2) : "");
            }
            message = message.substring(p.end());
        }
        StringBuilder b = new StringBuilder(96 + message.length());
        b.append(TIME.format(r.getInstant())).append(' ');
        String level = level(r.getLevel());
        b.append(level).append(" ".repeat(Math.max(1, 6 - level.length())));
        b.append(source).append(' ').append(message);
        Throwable t = r.getThrown();
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            b.append(c == t ? "; " : "; caused by ").append(c.getClass().getName());
            if (c.getMessage() != null) {
                b.append(": ").append(c.getMessage().replace('\n', ' '));
            }
        }
        b.append(System.lineSeparator());
        if (t != null && stackTraces) {
            StringWriter w = new StringWriter();
            t.printStackTrace(new PrintWriter(w));
            for (String line : w.toString().split("\\R")) {
                b.append("    ").append(line).append(System.lineSeparator());
            }
        }
        return b.toString();
    }

    /** Message parameters: numbers as plain digits, no locale grouping. */
    @Override
    public synchronized String formatMessage(LogRecord record) {
        Object[] params = record.getParameters();
        if (params != null) {
            Object[] plain = params.clone();
            for (int i = 0; i < plain.length; i++) {
                if (plain[i] instanceof Number n) {
                    plain[i] = n.toString();
                }
            }
            record.setParameters(plain);
        }
        return super.formatMessage(record);
    }

    static String level(Level l) {
        int v = l.intValue();
        if (v >= Level.SEVERE.intValue()) {
            return "ERROR";
        }
        if (v >= Level.WARNING.intValue()) {
            return "WARN";
        }
        if (v >= Level.INFO.intValue()) {
            return "INFO";
        }
        if (v >= Level.FINE.intValue()) {
            return "DEBUG";
        }
        return "TRACE";
    }

    /** {@code --log-level} values and the java.util.logging levels they set. */
    static Level parseLevel(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "error" -> Level.SEVERE;
            case "warn", "warning" -> Level.WARNING;
            case "info" -> Level.INFO;
            case "debug" -> Level.FINE;
            case "trace" -> Level.FINEST;
            default -> throw new IllegalArgumentException("--log-level=" + name
                    + " is not one of error, warn, info, debug, trace");
        };
    }

    /**
     * Logs jvhost's events at {@code level} and above to standard error (journald's input under
     * systemd), one line per event, replacing the JDK's default two-line console format. Other
     * loggers (the JDK's HTTP server behind {@code --metrics}, ...) stay at INFO and above: their
     * debug output is about their internals, not about jvhost's devices.
     */
    static void install(Level level) {
        Logger root = Logger.getLogger("");
        LogLineFormatter f = new LogLineFormatter(level.intValue() <= Level.FINE.intValue());
        boolean any = false;
        for (Handler h : root.getHandlers()) {
            if (h instanceof ConsoleHandler) {
                h.setFormatter(f);
                h.setLevel(level);
                any = true;
            }
        }
        if (!any) {
            ConsoleHandler h = new ConsoleHandler();
            h.setFormatter(f);
            h.setLevel(level);
            root.addHandler(h);
        }
        root.setLevel(level.intValue() < Level.INFO.intValue() ? Level.INFO : level);
        JVHOST.setLevel(level);
    }

    /** Held so that its level is not lost to garbage collection of an unreferenced logger. */
    private static final Logger JVHOST = Logger.getLogger("io.jvhost");
}
