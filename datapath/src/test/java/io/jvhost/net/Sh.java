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
        // Five random base-36 characters (36^5 names): a leftover of a killed run is unlikely to collide.
        java.util.concurrent.ThreadLocalRandom r = java.util.concurrent.ThreadLocalRandom.current();
        StringBuilder b = new StringBuilder(5);
        for (int i = 0; i < 5; i++) {
            b.append(Character.forDigit(r.nextInt(36), 36));
        }
        return b.toString();
    }
}
