package io.jvhost.bench.soak;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.ToLongFunction;

/** Tables, CSV files, the gnuplot PNG and the summary of a soak or an idle-devices run. */
final class Report {
    private Report() {
    }

    static String header() {
        return String.format(Locale.ROOT, "%8s %7s %-11s %9s %9s %9s %9s %9s %9s %5s %5s %7s %12s",
                "t_min", "session", "front-end", "rss_MB", "guest_MB", "pss_MB", "heap_MB", "heapc_MB", "nmt_MB", "fds",
                "maps", "threads", "tap_frames");
    }

    static String line(Soak.Row r) {
        ProcMemory.Sample m = r.m();
        return String.format(Locale.ROOT, "%8.2f %7d %-11s %9s %9s %9s %9s %9s %9s %5d %5d %7d %12d", r.seconds() / 60,
                r.session(), r.frontEnd(), mb(m.rssKb()), mb(m.guestRssKb()), mb(m.pssKb()), mb(m.heapUsedKb()),
                mb(m.heapCommittedKb()),
                mb(m.nmtCommittedKb()), m.fds(), m.maps(), m.threads(), r.tapRx());
    }

    private static String mb(long kb) {
        return kb < 0 ? "-" : String.format(Locale.ROOT, "%.1f", kb / 1024.0);
    }

    static void soak(Path out, List<Soak.Row> rows, List<Soak.Session> sessions, double warmupS, double reconnectS,
                     double sampleS, String frontEnds, int pktLen, String javaOpts, String command, String started,
                     String loadStart, String loadEnd, int jvhostExit) throws IOException, InterruptedException {
        StringBuilder csv = new StringBuilder("seconds,session,frontend,rss_kb,guest_rss_kb,pss_kb,heap_used_kb,heap_committed_kb,"
                + "nmt_committed_kb,fds,maps,threads,tap_frames,jvhost_tx_frames,jvhost_tx_kicks,jvhost_wakeups\n");
        for (Soak.Row r : rows) {
            ProcMemory.Sample m = r.m();
            csv.append(String.format(Locale.ROOT, "%.1f,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d%n", r.seconds(), r.session(),
                    r.frontEnd(), m.rssKb(), m.guestRssKb(), m.pssKb(), m.heapUsedKb(), m.heapCommittedKb(), m.nmtCommittedKb(), m.fds(),
                    m.maps(), m.threads(), r.tapRx(), r.worker().txFrames(), r.worker().txKicks(), r.worker().wakeups()));
        }
        Files.writeString(out.resolve("samples.csv"), csv);
        StringBuilder scsv = new StringBuilder("session,frontend,start_s,seconds,sent,at_tap,fds_after,rss_after_kb\n");
        for (Soak.Session s : sessions) {
            scsv.append(String.format(Locale.ROOT, "%d,%s,%.1f,%.1f,%d,%d,%d,%d%n", s.index(), s.frontEnd(), s.startS(),
                    s.seconds(), s.sent(), s.atTap(), s.fdsAfter(), s.rssAfterKb()));
        }
        Files.writeString(out.resolve("sessions.csv"), scsv);
        boolean png = plot(out, rows, warmupS);

        StringBuilder md = new StringBuilder();
        md.append("Started ").append(started).append(" with `").append(command).append("`.\n\n");
        md.append(String.format(Locale.ROOT, "jvhost JVM options: launcher defaults + JVHOST_JAVA_OPTS=`%s`. Front-end: %s, "
                + "%d-byte frames (TX: front-end → tap), reconnecting every %.0f s; sampled every %.0f s. "
                + "Load average at start %s, at end %s. jvhost exit code after SIGTERM: %d.%n%n",
                javaOpts, frontEnds, pktLen, reconnectS, sampleS, loadStart, loadEnd, jvhostExit));
        summary(md, rows, sessions, warmupS);
        if (png) {
            md.append("\nPlot: `soak.png`.\n");
        }
        md.append("\n```\n").append(header()).append('\n');
        for (Soak.Row r : rows) {
            md.append(line(r)).append('\n');
        }
        md.append("```\n");
        Files.writeString(out.resolve("soak.md"), md);
        System.out.println();
        StringBuilder s = new StringBuilder();
        summary(s, rows, sessions, warmupS);
        System.out.print(s);
    }

    private static void summary(StringBuilder md, List<Soak.Row> rows, List<Soak.Session> sessions, double warmupS) {
        if (rows.isEmpty()) {
            md.append("No samples.\n");
            return;
        }
        Soak.Row last = rows.getLast();
        double warm = Math.min(warmupS, last.seconds() / 2);
        Soak.Row w = rows.stream().filter(r -> r.seconds() >= warm).findFirst().orElse(last);
        List<Soak.Row> after = rows.stream().filter(r -> r.seconds() >= w.seconds()).toList();
        double hours = (last.seconds() - w.seconds()) / 3600;
        md.append(String.format(Locale.ROOT, "Duration %.1f min, %d sessions, %d samples; reference sample at %.1f min "
                + "(after warm-up), last at %.1f min.%n%n", last.seconds() / 60, sessions.size(), rows.size(),
                w.seconds() / 60, last.seconds() / 60));
        md.append("| reading | first | at warm-up | min after | max after | last | last vs warm-up | per hour |\n");
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        row(md, "RSS (MB)", rows, w, after, last, hours, r -> r.m().rssKb());
        row(md, "RSS without guest RAM (MB)", rows, w, after, last, hours,
                r -> r.m().rssKb() < 0 || r.m().guestRssKb() < 0 ? -1 : r.m().rssKb() - r.m().guestRssKb());
        row(md, "guest RAM resident (MB)", rows, w, after, last, hours, r -> r.m().guestRssKb());
        row(md, "PSS (MB)", rows, w, after, last, hours, r -> r.m().pssKb());
        row(md, "heap used (MB)", rows, w, after, last, hours, r -> r.m().heapUsedKb());
        row(md, "heap committed (MB)", rows, w, after, last, hours, r -> r.m().heapCommittedKb());
        row(md, "NMT committed (MB)", rows, w, after, last, hours, r -> r.m().nmtCommittedKb());
        md.append(String.format(Locale.ROOT, "| fds | %d | %d | %d | %d | %d | %+d | |%n", rows.getFirst().m().fds(),
                w.m().fds(), after.stream().mapToInt(r -> r.m().fds()).filter(v -> v >= 0).min().orElse(-1),
                after.stream().mapToInt(r -> r.m().fds()).max().orElse(-1), last.m().fds(), last.m().fds() - w.m().fds()));
        md.append(String.format(Locale.ROOT, "| threads | %d | %d | %d | %d | %d | %+d | |%n", rows.getFirst().m().threads(),
                w.m().threads(), after.stream().mapToInt(r -> r.m().threads()).filter(v -> v >= 0).min().orElse(-1),
                after.stream().mapToInt(r -> r.m().threads()).max().orElse(-1), last.m().threads(),
                last.m().threads() - w.m().threads()));
        md.append(String.format(Locale.ROOT, "| mappings | %d | %d | %d | %d | %d | %+d | |%n", rows.getFirst().m().maps(),
                w.m().maps(), after.stream().mapToInt(r -> r.m().maps()).filter(v -> v >= 0).min().orElse(-1),
                after.stream().mapToInt(r -> r.m().maps()).max().orElse(-1), last.m().maps(),
                last.m().maps() - w.m().maps()));
        if (!sessions.isEmpty()) {
            int fMin = sessions.stream().mapToInt(Soak.Session::fdsAfter).min().orElse(-1);
            int fMax = sessions.stream().mapToInt(Soak.Session::fdsAfter).max().orElse(-1);
            long noFrames = sessions.stream().filter(s -> s.atTap() <= 0).count();
            long frames = sessions.stream().mapToLong(s -> Math.max(0, s.atTap())).sum();
            md.append(String.format(Locale.ROOT, "%njvhost's fds after each session ended (no front-end connected): "
                    + "min %d, max %d over %d sessions (first %d, last %d).%n", fMin, fMax, sessions.size(),
                    sessions.getFirst().fdsAfter(), sessions.getLast().fdsAfter()));
            md.append(String.format(Locale.ROOT, "Frames written to the tap: %d; sessions that moved no frame: %d.%n",
                    frames, noFrames));
        }
        int stalls = 0;
        int busy = 0;
        StringBuilder which = new StringBuilder();
        for (int i = 1; i < rows.size(); i++) {
            Soak.Row a = rows.get(i - 1);
            Soak.Row b = rows.get(i);
            if (a.session() == b.session() && forwarding(a) && forwarding(b)) {
                busy++;
                if (b.tapRx() <= a.tapRx()) {
                    stalls++;
                    which.append(String.format(Locale.ROOT, "%n- %.1f–%.1f s, session %d (%s): jvhost TX kicks %+d, wake-ups %+d",
                            a.seconds(), b.seconds(), b.session(), b.frontEnd(), b.worker().txKicks() - a.worker().txKicks(),
                            b.worker().wakeups() - a.worker().wakeups()));
                }
            }
        }
        md.append(String.format(Locale.ROOT, "Sample intervals with the front-end forwarding at both ends (started, not yet told "
                + "to stop): %d, of which without a new frame at the tap: %d.%s%n", busy, stalls, which));
    }

    private static boolean forwarding(Soak.Row r) {
        return !r.frontEnd().equals("-") && !r.frontEnd().equals("starting") && !r.frontEnd().equals("stopping");
    }

    private static void row(StringBuilder md, String name, List<Soak.Row> rows, Soak.Row w, List<Soak.Row> after,
                            Soak.Row last, double hours, ToLongFunction<Soak.Row> f) {
        long first = f.applyAsLong(rows.getFirst());
        long at = f.applyAsLong(w);
        long end = f.applyAsLong(last);
        if (at < 0 || end < 0) {
            md.append("| ").append(name).append(" | - | - | - | - | - | - | - |\n");
            return;
        }
        long min = after.stream().mapToLong(f).filter(v -> v >= 0).min().orElse(-1);
        long max = after.stream().mapToLong(f).max().orElse(-1);
        md.append(String.format(Locale.ROOT, "| %s | %s | %s | %s | %s | %s | %+.2f %% | %s |%n", name, mb(first), mb(at),
                mb(min), mb(max), mb(end), 100.0 * (end - at) / at,
                hours > 0 ? String.format(Locale.ROOT, "%+.1f", (end - at) / 1024.0 / hours) : "-"));
    }

    /** soak.png: the sizes in MB over minutes, fds on the right axis. False when gnuplot is missing or fails. */
    private static boolean plot(Path out, List<Soak.Row> rows, double warmupS) throws IOException, InterruptedException {
        StringBuilder dat = new StringBuilder("# minutes rss_mb pss_mb heap_used_mb heap_committed_mb nmt_mb fds rss_without_guest_mb\n");
        for (Soak.Row r : rows) {
            ProcMemory.Sample m = r.m();
            dat.append(String.format(Locale.ROOT, "%.3f %s %s %s %s %s %d %s%n", r.seconds() / 60, nan(m.rssKb()),
                    nan(m.pssKb()), nan(m.heapUsedKb()), nan(m.heapCommittedKb()), nan(m.nmtCommittedKb()), m.fds(),
                    m.guestRssKb() < 0 ? "NaN" : nan(m.rssKb() - m.guestRssKb())));
        }
        Files.writeString(out.resolve("soak.dat"), dat);
        String gp = String.format(Locale.ROOT, """
                set terminal pngcairo size 1200,700 font ",11"
                set output "%s"
                set title "jvhost memory under reconnects"
                set xlabel "minutes"
                set ylabel "MB"
                set y2label "open fds"
                set ytics nomirror
                set y2tics
                set yrange [0:*]
                set y2range [0:*]
                set key outside bottom center horizontal
                set grid
                set arrow from %.3f, graph 0 to %.3f, graph 1 nohead dashtype 2
                plot "%s" using 1:2 with lines lw 2 title "RSS", \
                     "" using 1:8 with lines lw 2 title "RSS without guest RAM", \
                     "" using 1:3 with lines lw 2 title "PSS", \
                     "" using 1:4 with lines title "heap used", \
                     "" using 1:5 with lines title "heap committed", \
                     "" using 1:6 with lines lw 2 title "NMT committed", \
                     "" using 1:7 axes x1y2 with steps title "fds (right axis)"
                """, out.resolve("soak.png"), warmupS / 60, warmupS / 60, out.resolve("soak.dat"));
        return gnuplot(out.resolve("soak.gp"), gp);
    }

    static boolean gnuplot(Path script, String gp) throws IOException, InterruptedException {
        Files.writeString(script, gp);
        try {
            Process p = new ProcessBuilder("gnuplot", script.toString()).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(script.resolveSibling("gnuplot.log").toFile())).start();
            return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            System.err.println("soak: no plot: " + e.getMessage());
            return false;
        }
    }

    private static String nan(long kb) {
        return kb < 0 ? "NaN" : String.format(Locale.ROOT, "%.2f", kb / 1024.0);
    }
}
