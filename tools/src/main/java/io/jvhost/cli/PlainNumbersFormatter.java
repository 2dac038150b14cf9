package io.jvhost.cli;

import java.util.logging.ConsoleHandler;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.logging.SimpleFormatter;

/**
 * The JDK's console log format, with numeric message parameters printed as plain digits: the
 * datapath logs indices, fds, MTUs and counts through {@code System.Logger}, whose
 * {@code MessageFormat} would print them with locale grouping ({@code mtu 1,500}, {@code used.idx 1,344}).
 */
final class PlainNumbersFormatter extends SimpleFormatter {

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

    /** Puts this formatter on the root logger's console handlers (the default set-up has one). */
    static void install() {
        Logger root = Logger.getLogger("");
        boolean any = false;
        for (Handler h : root.getHandlers()) {
            if (h instanceof ConsoleHandler) {
                h.setFormatter(new PlainNumbersFormatter());
                any = true;
            }
        }
        if (!any) {
            ConsoleHandler h = new ConsoleHandler();
            h.setFormatter(new PlainNumbersFormatter());
            root.addHandler(h);
        }
    }
}
