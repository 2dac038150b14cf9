package io.jvhost.bench.soak;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * RSS per device: for each count N, one jvhost process with N devices ({@code --socket-path} /
 * {@code --tap} pairs, one queue pair each) and no front-end; after a settle time, the same
 * readings as the soak. Output: a table on stdout and {@code idle.md} in the output folder.
 */
final class IdleDevices {
    private IdleDevices() {
    }

    record Result(int devices, ProcMemory.Sample m, double startSeconds) {
    }

    static void run(Path out, Path launcher, String javaOpts, List<Integer> counts, int settleS, String command)
            throws IOException, InterruptedException {
        String loadStart = SoakMain.machine();
        String started = SoakMain.now();
        List<Result> results = new ArrayList<>();
        for (int n : counts) {
            Path sockDir = Files.createTempDirectory("jvsoak");
            try (SoakMain.Ns ns = new SoakMain.Ns()) {
                List<String> args = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    args.add("--socket-path=" + sockDir.resolve("d" + i + ".sock"));
                    args.add("--tap=" + ns.tap + "d" + i);
                }
                long t0 = System.nanoTime();
                try (SoakMain.JvhostProc jv = new SoakMain.JvhostProc(ns, launcher, javaOpts, args,
                        out.resolve("jvhost-idle-" + n + ".log"))) {
                    jv.awaitCount("listening on", n, 300_000);
                    double startS = (System.nanoTime() - t0) / 1e9;
                    ProcMemory pm = new ProcMemory(jv.process.pid());
                    pm.attach();
                    Thread.sleep(settleS * 1000L);
                    ProcMemory.Sample m = pm.sample();
                    results.add(new Result(n, m, startS));
                    System.out.printf(Locale.ROOT, "idle: %d device(s): RSS %.1f MB, PSS %.1f MB, NMT %.1f MB, heap used %.1f MB "
                            + "of %.1f MB committed, %d threads, %d fds (started in %.1f s)%n", n, m.rssKb() / 1024.0,
                            m.pssKb() / 1024.0, m.nmtCommittedKb() / 1024.0, m.heapUsedKb() / 1024.0,
                            m.heapCommittedKb() / 1024.0, m.threads(), m.fds(), startS);
                    int rc = jv.stop();
                    if (rc != 0) {
                        System.err.printf("idle: jvhost with %d devices exited %d on SIGTERM%n", n, rc);
                    }
                }
            } finally {
                try (var s = Files.list(sockDir)) {
                    for (Path p : s.toList()) {
                        Files.deleteIfExists(p);
                    }
                }
                Files.deleteIfExists(sockDir);
            }
        }
        StringBuilder md = new StringBuilder();
        md.append("Started ").append(started).append(" with `").append(command).append("`; jvhost JVM options: launcher "
                + "defaults + JVHOST_JAVA_OPTS=`").append(javaOpts).append("`; readings ").append(settleS)
                .append(" s after the last device listened, no front-end connected. Load average at start ")
                .append(loadStart).append(", at end ").append(SoakMain.machine()).append(".\n\n");
        md.append("| devices | RSS (MB) | RSS / device (MB) | RSS per added device (MB) | PSS (MB) | NMT committed (MB) "
                + "| heap used / committed (MB) | threads | fds | start (s) |\n");
        md.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        Result base = results.isEmpty() ? null : results.getFirst();
        for (Result r : results) {
            ProcMemory.Sample m = r.m();
            String marginal = r == base || r.devices() == base.devices() ? "-"
                    : String.format(Locale.ROOT, "%.2f", (m.rssKb() - base.m().rssKb()) / 1024.0 / (r.devices() - base.devices()));
            md.append(String.format(Locale.ROOT, "| %d | %.1f | %.2f | %s | %.1f | %.1f | %.1f / %.1f | %d | %d | %.1f |%n",
                    r.devices(), m.rssKb() / 1024.0, m.rssKb() / 1024.0 / r.devices(), marginal, m.pssKb() / 1024.0,
                    m.nmtCommittedKb() / 1024.0, m.heapUsedKb() / 1024.0, m.heapCommittedKb() / 1024.0, m.threads(),
                    m.fds(), r.startSeconds()));
        }
        Files.writeString(out.resolve("idle.md"), md);
        System.out.println();
        System.out.print(md);
    }
}
