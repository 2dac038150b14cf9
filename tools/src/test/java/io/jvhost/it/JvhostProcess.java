package io.jvhost.it;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The shipped jvhost ({@code tools/target/jvhost.jar}, what {@code tools/jvhost} runs, with the
 * launcher's JVM options) as a separate process — the way an operator runs it, so that it can be
 * killed with SIGKILL, stopped with SIGTERM and started again while its peer keeps running. With a
 * {@link NetNs} it runs inside that namespace ({@code ip netns exec}, which execs: the process is
 * the JVM itself), so the tap it creates or attaches to lives there; the vhost-user socket is a
 * file path and is reachable from every namespace.
 *
 * <p>The combined output (jvhost's log lines) goes to {@code target/it-logs/NAME-<random>.log} and
 * can be awaited line by line ({@link #awaitLog}).
 *
 * <p>Threading: confined to the test thread, except the output reader owned by {@link LineProcess}.
 */
public final class JvhostProcess implements AutoCloseable {
    /** The shaded jar that {@code mvn package} builds in this module. */
    public static final Path JAR = Path.of("target", "jvhost.jar").toAbsolutePath();
    /** A JVM start plus the tap and socket set-up on a loaded 2-core machine. */
    public static final Duration START_TIMEOUT = Duration.ofSeconds(60);

    private final LineProcess proc;

    private JvhostProcess(LineProcess proc) {
        this.proc = proc;
    }

    /** Why the jar cannot be run here, or null when it can. */
    public static String unavailableReason() {
        if (!Files.isRegularFile(JAR)) {
            return "needs the shaded jar (mvn package in tools): " + JAR;
        }
        return null;
    }

    /**
     * Starts {@code java -jar jvhost.jar ARGS} (inside {@code ns} when not null) with the JVM options
     * the launcher gives those arguments. Returns at once; use {@link #awaitLog} for "listening on"
     * (server) or "connected to" (client).
     */
    public static JvhostProcess start(String name, NetNs ns, String... args) throws IOException {
        return start(name, ns, List.of(), List.of(), args);
    }

    /**
     * {@link #start(String, NetNs, String...)} under {@code wrapper} (a program that execs the rest of
     * the command line, e.g. {@code systemd-socket-activate -l PATH}) with extra JVM options, given to
     * the launcher as {@code JVHOST_JAVA_OPTS} (so they override its defaults as an operator's would;
     * options without spaces).
     */
    public static JvhostProcess start(String name, NetNs ns, List<String> wrapper, List<String> jvmArgs, String... args)
            throws IOException {
        List<String> cmd = new ArrayList<>();
        if (ns != null) {
            cmd.addAll(List.of("ip", "netns", "exec", ns.name()));
        }
        cmd.addAll(wrapper);
        // wrapper, env and ip netns exec all exec: the pid is the JVM's.
        cmd.add("env");
        List<String> launcher = launcherJavaOptions(String.join(" ", jvmArgs), args);
        launcher.stream().filter(o -> !o.startsWith("-")).forEach(cmd::add);
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        launcher.stream().filter(o -> o.startsWith("-")).forEach(cmd::add);
        cmd.addAll(List.of("-jar", JAR.toString()));
        cmd.addAll(List.of(args));
        Path log = Cmd.logDir().resolve(name + "-" + Cmd.randomHex(3) + ".log");
        return new JvhostProcess(LineProcess.start(name, cmd, log));
    }

    /**
     * What {@code tools/jvhost} runs the jar with for {@code args} (its memory policy), from
     * {@code tools/jvhost --java-options}, with {@code javaOpts} as {@code JVHOST_JAVA_OPTS}: the
     * environment it sets ({@code NAME=VALUE}), then the JVM options (starting with {@code -}).
     */
    public static List<String> launcherJavaOptions(String javaOpts, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Cmd.tool("jvhost").toString(), "--java-options"));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT);
        pb.environment().put("JVHOST_JAVA_OPTS", javaOpts);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        try {
            if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new IOException("tools/jvhost --java-options failed: " + out);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        return out.lines().filter(l -> !l.isBlank()).toList();
    }

    /** Waits for a log line containing {@code text} at or after line {@code from}; returns its index. */
    public int awaitLog(String text, int from, Duration timeout) throws InterruptedException {
        return proc.awaitLine(l -> l.contains(text), from, timeout, "\"" + text + "\"");
    }

    /** Whether a line containing {@code text} has been logged at or after line {@code from}. */
    public boolean logged(String text, int from) {
        List<String> l = proc.lines();
        for (int i = from; i < l.size(); i++) {
            if (l.get(i).contains(text)) {
                return true;
            }
        }
        return false;
    }

    /** Lines logged so far (a starting point for {@link #awaitLog}). */
    public int logLines() {
        return proc.lineCount();
    }

    public long pid() {
        return proc.process().pid();
    }

    /** Every line logged so far. */
    public List<String> lines() {
        return proc.lines();
    }

    public boolean isAlive() {
        return proc.isAlive();
    }

    /** SIGKILL, as a crash or the OOM killer would: no clean-up at all. Waits until the process is gone. */
    public void kill() throws InterruptedException {
        proc.process().toHandle().destroyForcibly();
        if (!proc.process().waitFor(30, TimeUnit.SECONDS)) {
            throw new AssertionError(proc.name() + " survived SIGKILL for 30 s");
        }
    }

    /** SIGTERM (what systemd or an operator sends); returns the exit code, or -1 if it had to be killed after {@code grace}. */
    public int terminate(Duration grace) throws InterruptedException {
        return proc.stop(grace);
    }

    /** Waits for the process to end by itself (e.g. a refused start); returns its exit code. */
    public int awaitExit(Duration timeout) throws InterruptedException {
        return proc.awaitExit(timeout);
    }

    public String tail(int n) {
        return proc.tail(n);
    }

    /** Ends whatever is left (SIGTERM, then SIGKILL); idempotent. */
    @Override
    public void close() {
        proc.close();
    }
}
