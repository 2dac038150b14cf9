package io.jvhost.bench;

import java.util.Arrays;

/**
 * Noise-resistant A/B/C for TX on a shared machine: one JVM, one tap, one engine; the modes
 * (bare {@code writev} loop, engine with one syscall per frame, engine with io_uring) alternate in
 * short slices, the order rotating every round, and each mode's per-frame time is the median over
 * the rounds — so a neighbour's burst hits all modes alike. Needs root (same set-up as
 * {@link EngineBench}).
 *
 * <pre>java --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar io.jvhost.bench.TxAlternate [frameLen] [rounds] [sliceMs]</pre>
 */
public final class TxAlternate {
    private TxAlternate() {
    }

    public static void main(String[] args) throws Exception {
        int frameLen = args.length > 0 ? Integer.parseInt(args[0]) : 64;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 30;
        long sliceNs = (args.length > 2 ? Long.parseLong(args[2]) : 100) * 1_000_000L;
        TxBatchBench b = new TxBatchBench();
        b.frameLen = frameLen;
        b.io = "uring";
        b.setup();
        try {
            b.setupIo();
            String[] names = {"plainWritev", "engine-syscalls", "engine-uring", "rawWritev", "rawWritevCrit"};
            int modes = names.length;
            double[][] nsPerFrame = new double[modes][rounds];
            // warm-up: every mode compiled by C2 before measuring
            for (int w = 0; w < 3; w++) {
                for (int m = 0; m < modes; m++) {
                    slice(b, m, sliceNs);
                }
            }
            for (int r = 0; r < rounds; r++) {
                for (int j = 0; j < modes; j++) {
                    int m = (r + j) % modes;
                    nsPerFrame[m][r] = slice(b, m, sliceNs);
                }
            }
            double[] med = new double[modes];
            for (int m = 0; m < modes; m++) {
                double[] s = nsPerFrame[m].clone();
                Arrays.sort(s);
                med[m] = s[rounds / 2];
                System.out.printf("%-16s frameLen=%d median %.0f ns/frame (%.3f Mpps), p25 %.0f, p75 %.0f%n", names[m],
                        frameLen, med[m], 1e3 / med[m], s[rounds / 4], s[3 * rounds / 4]);
            }
            StringBuilder out = new StringBuilder("throughput vs plainWritev (per-round ratio, median [p25..p75]):");
            for (int m = 1; m < modes; m++) {
                double[] q = new double[rounds];
                for (int r = 0; r < rounds; r++) {
                    q[r] = nsPerFrame[0][r] / nsPerFrame[m][r];
                }
                Arrays.sort(q);
                out.append(String.format(" %s %.3f [%.3f..%.3f]", names[m], q[rounds / 2], q[rounds / 4], q[3 * rounds / 4]));
            }
            System.out.println(out);
        } finally {
            b.teardownIo();
            b.teardown();
        }
    }

    /** Runs mode {@code m} for about {@code ns}; returns ns per frame. */
    private static double slice(TxBatchBench b, int m, long ns) {
        b.tx.useRing(m == 2 ? b.ring : null, b.arena);
        long frames = 0;
        long t0 = System.nanoTime();
        long t;
        do {
            if (m == 0) {
                b.plainWritev();
            } else if (m >= 3) {
                b.rawWritev(m == 4);
            } else {
                b.txBatch(null);
            }
            frames += TxBatchBench.BATCH;
        } while ((t = System.nanoTime()) - t0 < ns);
        return (double) (t - t0) / frames;
    }
}
