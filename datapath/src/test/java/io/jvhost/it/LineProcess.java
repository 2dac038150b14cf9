package io.jvhost.it;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * A long-running peer process (QEMU, testpmd) whose combined output is collected line by line,
 * copied to a log file, and can be awaited: "wait until a line matching X appears, fail at once
 * if the process ends first, fail after a timeout" — with the tail of the output in the failure.
 *
 * <p>Threading: one virtual thread reads the output; every other method may be called from any
 * thread (the line list is guarded by this object's monitor).
 */
public final class LineProcess implements AutoCloseable {
    /** Peers still running: killed by a shutdown hook if the test JVM ends without closing them. */
    private static final java.util.Set<Process> LIVE = java.util.concurrent.ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> LIVE.forEach(p -> Cmd.killTree(p.toHandle())), "it-peer-reaper"));
    }

    private final String name;
    private final Process process;
    private final List<String> lines = new ArrayList<>();
    private final Path log;
    private final Thread reader;
    private boolean eof;

    private LineProcess(String name, Process process, Path log) {
        this.name = name;
        this.process = process;
        this.log = log;
        LIVE.add(process);
        this.reader = Thread.ofVirtual().name(name + "-out").start(this::pump);
    }

    /** Starts {@code cmd}; stdin stays an open pipe (a closed stdin ends some programs), output goes to {@code log}. */
    public static LineProcess start(String name, List<String> cmd, Path log) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        return new LineProcess(name, p, log);
    }

    private void pump() {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
             PrintWriter w = new PrintWriter(Files.newBufferedWriter(log, StandardCharsets.UTF_8), true)) {
            try {
                String line;
                while ((line = r.readLine()) != null) {
                    // The serial console ends lines with \r\n and QEMU/testpmd sprinkle escape sequences.
                    String clean = line.replace("\r", "").replaceAll("\u001B\\[[0-9;]*[A-Za-z]", "");
                    w.println(clean);
                    synchronized (this) {
                        lines.add(clean);
                        notifyAll();
                    }
                }
            } catch (IOException | RuntimeException e) {
                w.println("[LineProcess: output reader failed: " + e + "]");
            }
        } catch (IOException ignored) {
            // the log file cannot be written: nothing sensible left to do
        } finally {
            synchronized (this) {
                eof = true;
                notifyAll();
            }
        }
    }

    public String name() {
        return name;
    }

    public Process process() {
        return process;
    }

    public Path log() {
        return log;
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** The process's stdin (for an interactive guest shell). */
    public OutputStream stdin() {
        return process.getOutputStream();
    }

    /** Lines seen so far. */
    public synchronized List<String> lines() {
        return List.copyOf(lines);
    }

    public synchronized int lineCount() {
        return lines.size();
    }

    /**
     * Waits for the first line at index {@code from} or later that matches; returns its index.
     * Throws {@link AssertionError} with the output's tail when the process ends first or time runs out.
     */
    public int awaitLine(Predicate<String> match, int from, Duration timeout, String what) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (this) {
            int i = from;
            while (true) {
                for (; i < lines.size(); i++) {
                    if (match.test(lines.get(i))) {
                        return i;
                    }
                }
                if (eof) {
                    throw new AssertionError(name + " ended (exit " + exitCodeOrNa() + ") before " + what + "\n" + tail(40));
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new AssertionError(name + ": no " + what + " within " + timeout + "\n" + tail(40));
                }
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
        }
    }

    private String exitCodeOrNa() {
        try {
            return process.waitFor(2, TimeUnit.SECONDS) ? Integer.toString(process.exitValue()) : "n/a";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "n/a";
        }
    }

    /** The last {@code n} lines, for failure messages. */
    public synchronized String tail(int n) {
        StringBuilder b = new StringBuilder("--- last lines of ").append(name).append(" (full log: ").append(log).append(") ---\n");
        for (int i = Math.max(0, lines.size() - n); i < lines.size(); i++) {
            b.append(lines.get(i)).append('\n');
        }
        return b.toString();
    }

    /**
     * Sends SIGTERM and waits up to {@code grace} for the process to end and its output to drain;
     * then SIGKILLs it and all its descendants. Returns the exit code, or -1 if it had to be killed.
     */
    public int stop(Duration grace) throws InterruptedException {
        if (process.isAlive()) {
            // Not Process.destroy(): that also closes our end of the output pipe at once, so the
            // peer dies of SIGPIPE while it prints its final report. The handle only signals.
            process.toHandle().destroy();
        }
        boolean ended = process.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS);
        if (!ended) {
            Cmd.killTree(process.toHandle());
            process.waitFor(5, TimeUnit.SECONDS);
        }
        reader.join(Duration.ofSeconds(5));
        return ended ? process.exitValue() : -1;
    }

    /** Waits up to {@code timeout} for the process to end by itself; returns its exit code or throws. */
    public int awaitExit(Duration timeout) throws InterruptedException {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            throw new AssertionError(name + " still running after " + timeout + "\n" + tail(40));
        }
        reader.join(Duration.ofSeconds(5));
        return process.exitValue();
    }

    /** Kills whatever is left: the process and any descendants (idempotent). */
    @Override
    public void close() {
        try {
            stop(Duration.ofSeconds(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            Cmd.killTree(process.toHandle());
        } finally {
            process.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
            LIVE.remove(process);
        }
    }
}
