package io.jvhost.it;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A minimal QMP client (QEMU's JSON monitor, docs/interop/qmp-spec) over the unix socket that
 * {@code -qmp unix:PATH,server=on,wait=off} opens: capabilities negotiation, then one command at a
 * time; asynchronous events are skipped. Answers are kept as their JSON text and picked apart with
 * small patterns — enough for migration ({@link #migrate}, {@link #migrationStatus}) and run state.
 *
 * <p>Threading: one thread at a time.
 */
public final class Qmp implements AutoCloseable {
    private static final Pattern STATUS = Pattern.compile("\"status\"\\s*:\\s*\"([a-z-]+)\"");

    private final SocketChannel ch;
    private final BufferedReader in;

    private Qmp(SocketChannel ch) throws IOException {
        this.ch = ch;
        this.in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
        String greeting = in.readLine();
        if (greeting == null || !greeting.contains("\"QMP\"")) {
            throw new IOException("not a QMP greeting: " + greeting);
        }
        execute("qmp_capabilities", null);
    }

    /** Connects to {@code socket}, retrying while QEMU has not opened it yet. */
    public static Qmp connect(Path socket, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline) {
            SocketChannel ch = null;
            try {
                ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                ch.connect(UnixDomainSocketAddress.of(socket));
                return new Qmp(ch);
            } catch (IOException e) {
                last = e;
                if (ch != null) {
                    try {
                        ch.close();
                    } catch (IOException ignored) {
                        // nothing to do
                    }
                }
                Thread.sleep(200);
            }
        }
        throw new AssertionError("QMP socket " + socket + " not ready within " + timeout + ": " + last);
    }

    /**
     * Runs {@code command} with {@code argumentsJson} (a JSON object, or null) and returns the
     * answer line; an {@code "error"} answer throws {@link AssertionError} with its text.
     */
    public String execute(String command, String argumentsJson) {
        String msg = "{\"execute\":\"" + command + "\"" + (argumentsJson != null ? ",\"arguments\":" + argumentsJson : "")
                + "}\n";
        try {
            ByteBuffer b = ByteBuffer.wrap(msg.getBytes(StandardCharsets.UTF_8));
            while (b.hasRemaining()) {
                ch.write(b);
            }
            while (true) {
                String line = in.readLine();
                if (line == null) {
                    throw new AssertionError("QMP connection closed during " + command);
                }
                if (line.contains("\"event\"")) {
                    continue;
                }
                if (line.contains("\"error\"")) {
                    throw new AssertionError("QMP " + command + " failed: " + line);
                }
                return line;
            }
        } catch (IOException e) {
            throw new UncheckedIOException("QMP " + command, e);
        }
    }

    /** Starts an outgoing migration to {@code uri} (e.g. {@code unix:/path}) without a bandwidth cap. */
    public void migrate(String uri) {
        // QEMU's default cap (128 MiB/s in 7.2) is for shared links; a local unix socket takes more
        execute("migrate-set-parameters", "{\"max-bandwidth\":4294967296}");
        execute("migrate", "{\"uri\":\"" + uri + "\"}");
    }

    /** query-migrate's status: none, setup, active, completed, failed, ... */
    public String migrationStatus() {
        return field(execute("query-migrate", null));
    }

    /**
     * Waits for the migration to complete; returns query-migrate's answer (times, bytes). Fails at
     * once when it fails or is cancelled.
     */
    public String awaitMigration(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            String r = execute("query-migrate", null);
            String s = field(r);
            if ("completed".equals(s)) {
                return r;
            }
            if ("failed".equals(s) || "cancelled".equals(s)) {
                throw new AssertionError("migration " + s + ": " + r);
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("migration not completed within " + timeout + ": " + r);
            }
            Thread.sleep(200);
        }
    }

    /** query-status's status: running, paused, inmigrate, postmigrate, ... */
    public String runState() {
        return field(execute("query-status", null));
    }

    /** Ends QEMU ({@code quit}); the connection closes with it. */
    public void quit() {
        try {
            execute("quit", null);
        } catch (AssertionError | UncheckedIOException e) {
            // QEMU may close the socket before or after answering
        }
    }

    private static String field(String json) {
        Matcher m = STATUS.matcher(json);
        return m.find() ? m.group(1) : null;
    }

    @Override
    public void close() {
        try {
            ch.close();
        } catch (IOException ignored) {
            // already gone with QEMU
        }
    }
}
