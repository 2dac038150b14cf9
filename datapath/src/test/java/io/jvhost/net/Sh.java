package io.jvhost.net;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

/** Test helper: runs a command, returns stdout, throws with stderr on failure. */
public final class Sh {
    private Sh() {
    }

    public static String run(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            byte[] out = p.getInputStream().readAllBytes();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("timeout: " + String.join(" ", cmd));
            }
            String s = new String(out, StandardCharsets.UTF_8);
            if (p.exitValue() != 0) {
                throw new IllegalStateException(String.join(" ", cmd) + " -> exit " + p.exitValue() + ": " + s);
            }
            return s;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** Like {@link #run} but never throws (cleanup). */
    public static void quiet(String... cmd) {
        try {
            run(cmd);
        } catch (RuntimeException ignored) {
            // best effort
        }
    }

    public static boolean isRoot() {
        try {
            return "0".equals(run("id", "-u").trim());
        } catch (RuntimeException e) {
            return false;
        }
    }

    public static boolean canUseTap() {
        return isRoot() && java.nio.file.Files.exists(java.nio.file.Path.of("/dev/net/tun"));
    }

    /** A unique short suffix (interface names are at most 15 characters). */
    public static String suffix() {
        return Long.toString(Math.abs(System.nanoTime() ^ Thread.currentThread().threadId() * 0x9E3779B97F4A7C15L) % 46656L
                + 46656L, 36).substring(0, 3) + Integer.toString((int) (Math.random() * 1296) + 1296, 36).substring(0, 2);
    }
}
