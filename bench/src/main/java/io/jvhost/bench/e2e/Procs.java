package io.jvhost.bench.e2e;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Child processes of one bench run: started with their output in a log file, stopped with
 * SIGTERM (every contender here exits cleanly on it and prints its totals), killed if they linger.
 * Not thread-safe: used from the harness thread only.
 */
final class Procs implements AutoCloseable {
    private final List<Process> started = new ArrayList<>();
    private final Path logDir;

    Procs(Path logDir) {
        this.logDir = logDir;
    }

    /** Starts {@code cmd} with stdout+stderr into {@code <logDir>/<name>.log}. */
    Process start(String name, List<String> cmd) throws IOException {
        Path log = logDir.resolve(name + ".log");
        Files.writeString(log, "# " + String.join(" ", cmd) + "\n");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        Process p = pb.start();
        started.add(p);
        return p;
    }

    Path log(String name) {
        return logDir.resolve(name + ".log");
    }

    /** Stops one process: SIGTERM, then SIGKILL after {@code graceMs}. */
    static void stop(Process p, long graceMs) {
        if (!p.isAlive()) {
            return;
        }
        p.destroy();
        try {
            if (!p.waitFor(graceMs, TimeUnit.MILLISECONDS)) {
                p.destroyForcibly().waitFor(2, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
        }
    }

    /** Stops everything still running, newest first (front-ends before back-ends). */
    @Override
    public void close() {
        for (int i = started.size() - 1; i >= 0; i--) {
            stop(started.get(i), 5000);
        }
        started.clear();
    }

    /** utime + stime of a live process, in seconds (all its threads), or NaN when it is gone. */
    static double cpuSeconds(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
            // comm may contain spaces: fields are counted after the closing parenthesis.
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
            long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]); // fields 14, 15 of proc(5)
            return ticks / (double) CLK_TCK;
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
    }

    /** USER_HZ; 100 on every Linux this runs on (sysconf is not worth a native call here). */
    static final int CLK_TCK = 100;

    /** Runs a short command to completion, returns its stdout+stderr; throws on non-zero exit. */
    static String run(long timeoutSec, String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(timeoutSec, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("timed out: " + String.join(" ", cmd));
        }
        String s = new String(out, java.nio.charset.StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            throw new IOException("exit " + p.exitValue() + ": " + String.join(" ", cmd) + ": " + s.strip());
        }
        return s;
    }

    /** The last "RESULT k=v ..." line a limit program printed into its log, or "". */
    static String resultLine(Path log) {
        try {
            List<String> lines = Files.readAllLines(log);
            for (int i = lines.size() - 1; i >= 0; i--) {
                if (lines.get(i).startsWith("RESULT ")) {
                    return lines.get(i).substring(7);
                }
            }
        } catch (IOException e) {
            // no log: no result
        }
        return "";
    }

    static double resultValue(String result, String key) {
        for (String kv : result.split(" ")) {
            if (kv.startsWith(key + "=")) {
                return Double.parseDouble(kv.substring(key.length() + 1));
            }
        }
        return Double.NaN;
    }
}
