package io.jvhost.it;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Small process helpers shared by the real-peer test support classes: run a command with a
 * timeout, find the repository's {@code tools/} scripts, check what the machine offers.
 *
 * <p>Threading: all methods are safe to call from any thread; none keeps state except the cached
 * repository root.
 */
public final class Cmd {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static volatile Path repoRoot;

    private Cmd() {
    }

    /** Exit code and combined stdout+stderr of a finished command. */
    public record Result(List<String> command, int exitCode, String output) {
        public boolean ok() {
            return exitCode == 0;
        }

        /** Returns this result, or throws with the command and its output when it failed. */
        public Result orThrow() {
            if (exitCode != 0) {
                throw new IllegalStateException(String.join(" ", command) + " -> exit " + exitCode + ":\n" + output);
            }
            return this;
        }
    }

    /** Runs {@code cmd} to completion (killed after {@code timeout}, reported as exit code -1). */
    public static Result run(Duration timeout, List<String> cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
            // Read on another thread: a chatty command must not block on a full pipe while we wait.
            StringBuilder out = new StringBuilder();
            Thread reader = Thread.ofVirtual().start(() -> {
                try (InputStream in = p.getInputStream()) {
                    String s = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                    synchronized (out) {
                        out.append(s);
                    }
                } catch (IOException ignored) {
                    // process killed: keep what we have
                }
            });
            boolean done = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (!done) {
                killTree(p.toHandle());
            }
            reader.join(2000);
            synchronized (out) {
                return new Result(List.copyOf(cmd), done ? p.exitValue() : -1,
                        done ? out.toString() : out + "\n[killed after " + timeout + "]");
            }
        } catch (IOException e) {
            return new Result(List.copyOf(cmd), -2, e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted running " + cmd, e);
        }
    }

    public static Result run(Duration timeout, String... cmd) {
        return run(timeout, List.of(cmd));
    }

    /** Runs {@code cmd} with a 60 s limit and throws unless it exits 0. */
    public static String ok(String... cmd) {
        return run(Duration.ofSeconds(60), cmd).orThrow().output();
    }

    /** Like {@link #ok} but never throws: for cleanup paths. */
    public static void quiet(String... cmd) {
        run(Duration.ofSeconds(30), cmd);
    }

    /** SIGKILLs a process and everything it started (children first is irrelevant for SIGKILL). */
    public static void killTree(ProcessHandle h) {
        h.descendants().forEach(ProcessHandle::destroyForcibly);
        h.destroyForcibly();
    }

    public static boolean isRoot() {
        Result r = run(Duration.ofSeconds(10), "id", "-u");
        return r.ok() && r.output().trim().equals("0");
    }

    /** True when an executable of that name is on the PATH. */
    public static boolean onPath(String exe) {
        String path = System.getenv("PATH");
        if (path == null) {
            return false;
        }
        for (String dir : path.split(":")) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, exe))) {
                return true;
            }
        }
        return false;
    }

    /** {@code n} random bytes as lower-case hex: unique suffixes for netns, tap and socket names. */
    public static String randomHex(int n) {
        byte[] b = new byte[n];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /** The repository root: the nearest directory upwards from the working directory holding tools/guest-vm. */
    public static Path repoRoot() {
        Path r = repoRoot;
        if (r == null) {
            Path p = Path.of("").toAbsolutePath();
            while (p != null && !Files.isRegularFile(p.resolve("tools/guest-vm"))) {
                p = p.getParent();
            }
            if (p == null) {
                throw new UncheckedIOException(new IOException("no tools/guest-vm above " + Path.of("").toAbsolutePath()));
            }
            repoRoot = r = p;
        }
        return r;
    }

    /** A script in the repository's tools/ folder. */
    public static Path tool(String name) {
        return repoRoot().resolve("tools").resolve(name);
    }

    /** Where tests keep logs of their peers (serial consoles, testpmd output): target/it-logs. */
    public static Path logDir() {
        Path d = Path.of(System.getProperty("jvhost.it.logs", "target/it-logs")).toAbsolutePath();
        try {
            Files.createDirectories(d);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return d;
    }

    /** Deletes a directory tree, best effort. */
    public static void deleteTree(Path dir) {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort
                }
            });
        } catch (IOException ignored) {
            // best effort
        }
    }
}
