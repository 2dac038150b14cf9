package io.jvhost.bench.soak;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The memory of another JVM process as an operator's tools see it: the kernel's view from
 * {@code /proc/PID} (RSS, PSS, open fds, mappings, threads) and the JVM's own from {@code jcmd}
 * (heap used and committed from {@code GC.heap_info}, the committed total of Native Memory Tracking
 * when the process runs with {@code -XX:NativeMemoryTracking=summary|detail}).
 *
 * <p>The first {@code jcmd} starts the target's attach listener, which keeps one unix socket open
 * for the rest of the process's life: call {@link #attach} once before taking an fd baseline.
 */
public final class ProcMemory {
    /** One reading; sizes in KiB, -1 where a value could not be read. */
    public record Sample(long rssKb, long pssKb, long guestRssKb, long heapUsedKb, long heapCommittedKb,
                         long nmtCommittedKb, int fds, int maps, int threads) {
    }

    private static final Pattern USED = Pattern.compile("\\bused (\\d+)([KMG])");
    private static final Pattern ZGC_CAPACITY = Pattern.compile("\\bcapacity (\\d+)([KMG])");
    private static final Pattern G1_COMMITTED = Pattern.compile("\\bcommitted (\\d+)([KMG])");
    private static final Pattern GEN_TOTAL = Pattern.compile("\\btotal (\\d+)([KMG])");
    private static final Pattern NMT_TOTAL = Pattern.compile("Total: reserved=(\\d+)KB(?: [-+]\\d+KB)?, committed=(\\d+)KB");

    private final long pid;
    private final String jcmd;

    public ProcMemory(long pid) {
        this.pid = pid;
        this.jcmd = Path.of(System.getProperty("java.home"), "bin", "jcmd").toString();
    }

    public long pid() {
        return pid;
    }

    /** Starts the target's attach listener (a harmless command), so later fd counts do not move by it. */
    public void attach() throws IOException, InterruptedException {
        jcmd("VM.version");
    }

    /** Every reading, the JVM's through {@code jcmd} included. */
    public Sample sample() {
        Sample k = sampleProcOnly();
        long[] heap = heap();
        return new Sample(k.rssKb(), k.pssKb(), k.guestRssKb(), heap[0], heap[1], nmtCommittedKb(), k.fds(), k.maps(),
                k.threads());
    }

    /** The kernel's readings only (no {@code jcmd}: cheap, and no work for the target); JVM fields -1. */
    public Sample sampleProcOnly() {
        Path proc = Path.of("/proc", Long.toString(pid));
        long rss = -1;
        int threads = -1;
        try {
            for (String l : Files.readAllLines(proc.resolve("status"))) {
                if (l.startsWith("VmRSS:")) {
                    rss = kb(l);
                } else if (l.startsWith("Threads:")) {
                    threads = Integer.parseInt(l.substring(8).trim());
                }
            }
        } catch (IOException | RuntimeException e) {
            // gone or unreadable: -1
        }
        long pss = -1;
        try {
            for (String l : Files.readAllLines(proc.resolve("smaps_rollup"))) {
                if (l.startsWith("Pss:")) {
                    pss = kb(l);
                }
            }
        } catch (IOException | RuntimeException e) {
            // -1
        }
        long guest = guestRssKb(proc);
        int fds = count(proc.resolve("fd"));
        int maps = -1;
        try (Stream<String> s = Files.lines(proc.resolve("maps"))) {
            maps = (int) s.count();
        } catch (IOException | RuntimeException e) {
            // -1
        }
        return new Sample(rss, pss, guest, -1, -1, -1, fds, maps, threads);
    }

    /**
     * Resident pages of the front-ends' guest RAM that jvhost has mapped: the memfd mappings other
     * than ZGC's own heap ({@code /memfd:java_heap}). QEMU, DPDK ({@code /memfd:nohuge}) and the Java
     * driver all hand over memfds. These pages are shared with the front-end and counted in RSS as
     * soon as jvhost touched them (rings, frame data), until the session's table is unmapped.
     */
    static long guestRssKb(Path proc) {
        long kb = 0;
        boolean guest = false;
        try (Stream<String> s = Files.lines(proc.resolve("smaps"))) {
            for (String l : (Iterable<String>) s::iterator) {
                if (isMappingHeader(l)) {
                    guest = l.contains("/memfd:") && !l.contains("/memfd:java_heap");
                } else if (guest && l.startsWith("Rss:")) {
                    kb += kb(l);
                }
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return kb;
    }

    /** A smaps mapping line ("start-end perms offset dev inode [path]") rather than a "Key: value" line. */
    private static boolean isMappingHeader(String l) {
        int dash = l.indexOf('-');
        int sp = l.indexOf(' ');
        return dash > 0 && sp > dash && l.substring(0, dash).chars().allMatch(c -> Character.digit(c, 16) >= 0);
    }

    /** {@code jcmd GC.heap_info}: {used, committed} in KiB, summed over generations; {-1, -1} if unreadable. */
    public long[] heap() {
        try {
            return parseHeapInfo(jcmd("GC.heap_info"));
        } catch (IOException | RuntimeException e) {
            return new long[] {-1, -1};
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new long[] {-1, -1};
        }
    }

    /**
     * Heap used and committed from {@code GC.heap_info} of any HotSpot collector: ZGC prints one
     * {@code ZHeap used 34M, capacity 378M} line, G1 one {@code garbage-first heap ... committed
     * .., used ..} line, Serial and Parallel one line per generation ({@code total .., used ..}).
     * Only unindented lines count (indented ones are spaces inside a generation).
     */
    static long[] parseHeapInfo(String out) {
        long used = 0;
        long committed = 0;
        boolean any = false;
        for (String l : out.lines().toList()) {
            if (l.isEmpty() || Character.isWhitespace(l.charAt(0)) || l.matches("^\\d+:$")
                    || l.startsWith("Metaspace") || l.startsWith("class space")) {
                continue;
            }
            Matcher u = USED.matcher(l);
            if (!u.find()) {
                continue;
            }
            any = true;
            used += size(u.group(1), u.group(2));
            for (Pattern p : List.of(ZGC_CAPACITY, G1_COMMITTED, GEN_TOTAL)) {
                Matcher c = p.matcher(l);
                if (c.find()) {
                    committed += size(c.group(1), c.group(2));
                    break;
                }
            }
        }
        return any ? new long[] {used, committed} : new long[] {-1, -1};
    }

    /** NMT's committed total in KiB, or -1 when the process runs without Native Memory Tracking. */
    public long nmtCommittedKb() {
        try {
            Matcher m = NMT_TOTAL.matcher(jcmd("VM.native_memory", "summary"));
            return m.find() ? Long.parseLong(m.group(2)) : -1;
        } catch (IOException | RuntimeException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    /** Runs {@code jcmd PID ARGS...} and returns its output; throws on a non-zero exit. */
    public String jcmd(String... args) throws IOException, InterruptedException {
        String[] cmd = new String[args.length + 2];
        cmd[0] = jcmd;
        cmd[1] = Long.toString(pid);
        System.arraycopy(args, 0, cmd, 2, args.length);
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("jcmd timed out: " + String.join(" ", args));
        }
        String s = new String(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            throw new IOException("jcmd " + String.join(" ", args) + ": exit " + p.exitValue() + ": " + s.strip());
        }
        return s;
    }

    private static int count(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            return (int) s.count();
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    /** "VmRSS:    123456 kB" → 123456. */
    private static long kb(String line) {
        String[] f = line.trim().split("\\s+");
        return Long.parseLong(f[1]);
    }

    private static long size(String n, String unit) {
        long v = Long.parseLong(n);
        return switch (unit) {
            case "G" -> v << 20;
            case "M" -> v << 10;
            default -> v;
        };
    }
}
