package io.jvhost.bench.soak;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/**
 * One soak run (see {@link SoakMain}): jvhost in a namespace, front-ends reconnecting, a sampler
 * thread reading jvhost's memory every sample period.
 */
final class Soak {
    /**
     * One periodic reading. {@code frontEnd}: the front-end's kind while it forwards, "starting"
     * before it does (EAL or JVM start-up, vhost-user set-up), "stopping" once told to stop, "-"
     * between sessions. {@code tapRx}: frames jvhost had written to the tap so far; {@code worker}:
     * jvhost's own counters then (from its stats socket).
     */
    record Row(double seconds, int session, String frontEnd, ProcMemory.Sample m, long tapRx, WorkerStats worker) {
    }

    /** One front-end session: frames it sent and the tap received, and jvhost's fds once it had gone. */
    record Session(int index, String frontEnd, double startS, double seconds, long sent, long atTap, int fdsAfter,
                   long rssAfterKb) {
    }

    private final Path out;
    private final Path launcher;
    private final String javaOpts;
    private final String frontEnds;
    private final int pktLen;
    private final List<Row> rows = Collections.synchronizedList(new ArrayList<>());
    private final List<Session> sessions = new ArrayList<>();
    private volatile int session;
    private volatile String current = "-";

    Soak(Path out, Path launcher, String javaOpts, String frontEnds, int pktLen) {
        this.out = out;
        this.launcher = launcher;
        this.javaOpts = javaOpts;
        this.frontEnds = frontEnds;
        this.pktLen = pktLen;
        if (!List.of("testpmd", "java-driver", "alternate").contains(frontEnds)) {
            throw new IllegalArgumentException("--frontend: testpmd, java-driver or alternate");
        }
    }

    void run(long durationMs, long reconnectMs, long sampleMs, long warmupMs, String command)
            throws IOException, InterruptedException {
        String loadStart = SoakMain.machine();
        String started = SoakMain.now();
        Path sockDir = Files.createTempDirectory("jvsoak");
        Path socket = sockDir.resolve("vhost.sock");
        Path statsSocket = sockDir.resolve("vhost.sock.stats");
        Path logs = Files.createDirectories(out.resolve("logs"));
        int jvhostExit;
        long t0;
        try (SoakMain.Ns ns = new SoakMain.Ns();
             SoakMain.JvhostProc jv = new SoakMain.JvhostProc(ns, launcher, javaOpts,
                     List.of("--socket-path=" + socket, "--tap=" + ns.tap), out.resolve("jvhost.log"))) {
            jv.awaitCount("listening on", 1, 120_000);
            ns.up(ns.tap, "10.99.0.1/24");
            ProcMemory pm = new ProcMemory(jv.process.pid());
            pm.attach();
            int baseFds = pm.sampleProcOnly().fds();
            t0 = System.nanoTime();
            System.out.println(Report.header());
            Thread sampler = Thread.ofPlatform().name("soak-sampler").daemon().start(() -> {
                long next = System.nanoTime();
                while (!Thread.currentThread().isInterrupted()) {
                    String fe = current;
                    Row r = new Row((System.nanoTime() - t0) / 1e9, session, fe, pm.sample(), ns.tapRx(ns.tap),
                            WorkerStats.read(statsSocket));
                    if (Thread.currentThread().isInterrupted()) {
                        return; // stopped in the middle of a reading: it is incomplete
                    }
                    rows.add(r);
                    System.out.println(Report.line(r));
                    next += sampleMs * 1_000_000;
                    long wait = next - System.nanoTime();
                    if (wait > 0) {
                        try {
                            Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                        } catch (InterruptedException e) {
                            return;
                        }
                    }
                }
            });
            long end = t0 + durationMs * 1_000_000;
            int k = 0;
            while (System.nanoTime() < end) {
                k++;
                String kind = switch (frontEnds) {
                    case "alternate" -> (k & 1) == 1 ? "testpmd" : "java-driver";
                    default -> frontEnds;
                };
                double startS = (System.nanoTime() - t0) / 1e9;
                long tapBefore = ns.tapRx(ns.tap);
                SoakMain.FrontEnd fe = new SoakMain.FrontEnd(kind, ns, socket, pktLen,
                        logs.resolve(String.format("session-%04d-%s.log", k, kind)));
                session = k;
                current = "starting";
                long stopAt = Math.min(end, System.nanoTime() + reconnectMs * 1_000_000);
                while (System.nanoTime() < stopAt && fe.process.isAlive()) {
                    if (current.equals("starting") && fe.forwarding()) {
                        current = kind;
                    }
                    Thread.sleep(Math.max(1, Math.min(200, (stopAt - System.nanoTime()) / 1_000_000)));
                }
                current = "stopping";
                long sent = fe.stop();
                current = "-";
                // The session has ended on jvhost's side once it logged the disconnect: only then
                // are its fds (socket, kick/call eventfds) expected back.
                try {
                    jv.awaitCount("front-end disconnected", k, 30_000);
                } catch (IOException e) {
                    System.err.println("soak: session " + k + ": " + e.getMessage());
                }
                long tapAfter = ns.tapRx(ns.tap);
                // The disconnect is logged just before the session's fds are closed: give them up to 5 s.
                ProcMemory.Sample after = pm.sampleProcOnly();
                for (int i = 0; i < 250 && after.fds() != baseFds; i++) {
                    Thread.sleep(20);
                    after = pm.sampleProcOnly();
                }
                sessions.add(new Session(k, kind, startS, (System.nanoTime() - t0) / 1e9 - startS, sent,
                        tapAfter - tapBefore, after.fds(), after.rssKb()));
                if (!jv.process.isAlive()) {
                    System.err.println("soak: jvhost exited " + jv.process.exitValue());
                    break;
                }
            }
            sampler.interrupt();
            sampler.join(60_000);
            rows.add(new Row((System.nanoTime() - t0) / 1e9, session, "-", pm.sample(), ns.tapRx(ns.tap),
                    WorkerStats.read(statsSocket)));
            System.out.println(Report.line(rows.getLast()));
            jvhostExit = jv.stop();
        } finally {
            Files.deleteIfExists(socket);
            Files.deleteIfExists(Path.of(socket + ".rings"));
            Files.deleteIfExists(sockDir);
        }
        Report.soak(out, List.copyOf(rows), List.copyOf(sessions), warmupMs / 1000.0, reconnectMs / 1000.0,
                sampleMs / 1000.0, frontEnds, pktLen, javaOpts, command, started, loadStart, SoakMain.machine(),
                jvhostExit);
        System.out.printf(Locale.ROOT, "soak: results in %s%n", out);
    }
}
