package io.jvhost.bench;

import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.nativ.Iovec;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * What one tap read costs, without a generator competing for the CPU: the tap's queue is filled
 * first (pkt_gen in the namespace, {@code txqueuelen} raised so the frames wait), then drained by
 * one reader mode alone and timed; the modes alternate, the order rotating every round, and each
 * mode's ns per frame is the median over the rounds. Modes:
 * <ul>
 *   <li>{@code hotRead}: {@code readv} of [2 KiB buffer | 64 KiB overflow], always the same buffer
 *       (what {@code tap_read}, the C limit, does with {@code read(2)});</li>
 *   <li>{@code ringRead}: the same into 1024 buffers of 4 KiB in turn (as a virtqueue cycles);</li>
 *   <li>{@code engine}: the real {@code RxEngine} on a 256-entry ring (driver re-posts each buffer),
 *       one {@code read} per frame; {@code engineUring}: the same with its batched io_uring reads;</li>
 *   <li>{@code uringReadv}: batches of 32 {@code IORING_OP_READV} (same two iovecs, buffers in turn,
 *       {@code RWF_NOWAIT}, fixed file) per {@code io_uring_enter};</li>
 *   <li>{@code uringRead}: the same with {@code IORING_OP_READ} into one 2 KiB buffer (no overflow
 *       iovec: the tap cuts a longer frame to the buffer, as {@code RxEngine} expects);</li>
 *   <li>{@code ringRead1}: one {@code read} per frame into the buffers in turn.</li>
 * </ul>
 * Needs root and {@code bench/target/e2e-bin/pkt_gen} (built by {@code bench/run-e2e}).
 *
 * <pre>java --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar io.jvhost.bench.RxDrain [frameLen] [rounds] [frames]</pre>
 */
public final class RxDrain {
    private static final int BUFS = 1024;
    private static final int BUF_STRIDE = 4096;
    private static final int BUF_LEN = 2048;
    private static final int OVERFLOW = 65536 + 64;
    private static final int K = 32;

    private RxDrain() {
    }

    public static void main(String[] args) throws Exception {
        int frameLen = args.length > 0 ? Integer.parseInt(args[0]) : 64;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 10;
        int frames = args.length > 2 ? Integer.parseInt(args[2]) : 200_000;
        Path gen = Path.of("bench/target/e2e-bin/pkt_gen");
        if (!Files.isExecutable(gen)) {
            throw new IllegalStateException(gen + " missing: run bench/run-e2e --quick once");
        }
        EngineBench b = new EngineBench();
        b.frameLen = frameLen;
        b.setup();
        IoUring ring = IoUring.create(K);
        try {
            EngineBench.run("ip", "-n", b.ns, "link", "set", b.tapName, "txqueuelen", Integer.toString(frames));
            int fd = b.tap.fd(0);
            ring.registerFile(fd);
            MemorySegment bufs = b.arena.allocate((long) BUFS * BUF_STRIDE, 4096);
            MemorySegment overflow = b.arena.allocate(OVERFLOW, 64);
            MemorySegment iovs = Iovec.allocate(b.arena, 2 * BUFS);
            for (int i = 0; i < BUFS; i++) {
                Iovec.set(iovs, 2 * i, bufs.address() + (long) i * BUF_STRIDE, BUF_LEN);
                Iovec.set(iovs, 2 * i + 1, overflow.address(), OVERFLOW);
            }
            String[] names = {"hotRead", "ringRead", "engine", "uringReadv", "uringRead", "ringRead1", "engineUring"};
            int modes = names.length;
            double[][] ns = new double[modes][rounds];
            String[] genCmd = {"ip", "netns", "exec", b.ns, gen.toString(), "--dev=" + b.tapName,
                    "--size=" + frameLen, "--mode=packet", "--dst-ip=10.98.0.2", "--src-ip=10.98.0.1",
                    "--dst-mac=52:54:00:12:34:56", "--seconds=" + Math.max(0.2, frames / 600_000.0)};
            for (int r = -2; r < rounds; r++) { // two warm-up rounds
                for (int j = 0; j < modes; j++) {
                    int m = Math.floorMod(r + j, modes);
                    EngineBench.run(genCmd);
                    long t0 = System.nanoTime();
                    long n = drain(b, m, fd, iovs, ring);
                    long t = System.nanoTime() - t0;
                    if (r >= 0) {
                        ns[m][r] = (double) t / Math.max(1, n);
                    }
                    if (n < frames / 2) {
                        System.out.printf("round %d %s: only %d frames queued%n", r, names[m], n);
                    }
                }
            }
            for (int m = 0; m < modes; m++) {
                double[] s = ns[m].clone();
                Arrays.sort(s);
                System.out.printf("%-11s frameLen=%d median %.0f ns/frame (%.3f Mpps), p25 %.0f, p75 %.0f%n",
                        names[m], frameLen, s[rounds / 2], 1e3 / s[rounds / 2], s[rounds / 4], s[3 * rounds / 4]);
            }
        } finally {
            ring.close();
            b.teardown();
        }
    }

    /** Reads until the tap is empty; returns frames read. */
    private static long drain(EngineBench b, int m, int fd, MemorySegment iovs, IoUring ring) {
        long n = 0;
        int i = 0;
        long base = iovs.address();
        switch (m) {
            case 0 -> {
                while (Fds.readvNonBlocking(fd, base, 2) > 0) {
                    n++;
                }
            }
            case 1 -> {
                while (Fds.readvNonBlocking(fd, base + (long) i * 2 * Iovec.SIZE, 2) > 0) {
                    n++;
                    i = (i + 1) & (BUFS - 1);
                }
            }
            case 5 -> {
                while (Fds.readNonBlocking(fd, Iovec.base(iovs, 2 * i), BUF_LEN) > 0) {
                    n++;
                    i = (i + 1) & (BUFS - 1);
                }
            }
            case 2, 6 -> {
                b.rx.useRing(m == 6 ? ring : null);
                while (b.rx.process(64, System.nanoTime()) > 0) {
                    long u;
                    while ((u = b.gRx.pollUsed()) >= 0) {
                        n++; // one buffer per frame: every frame here fits one mergeable buffer
                        long page = b.rxBufOfHead[(int) (u >>> 32)];
                        io.jvhost.driver.NetBufferLayout.rxMergeable(page, b.rxAddrs, b.rxLens);
                        b.rxBufOfHead[b.gRx.add(b.rxAddrs, b.rxLens, 0, 1, false)] = page;
                    }
                    b.gRx.publish();
                    b.rx.kicked();
                }
            }
            default -> {
                boolean more = true;
                while (more) {
                    for (int k = 0; k < K; k++) {
                        int slot = (i + k) & (BUFS - 1);
                        if (m == 3) {
                            ring.prepare(IoUring.OP_READV, 0, base + (long) slot * 2 * Iovec.SIZE, 2,
                                    IoUring.SQE_FIXED_FILE, IoUring.RWF_NOWAIT, k);
                        } else {
                            ring.prepare(IoUring.OP_READ, 0, Iovec.base(iovs, 2 * slot), BUF_LEN,
                                    IoUring.SQE_FIXED_FILE, IoUring.RWF_NOWAIT, k);
                        }
                    }
                    ring.submit(0);
                    int c = ring.completions();
                    for (int k = 0; k < c; k++) {
                        if (ring.cqeRes(k) > 0) {
                            n++;
                            i = (i + 1) & (BUFS - 1);
                        } else {
                            more = false;
                        }
                    }
                    ring.consume(c);
                }
            }
        }
        return n;
    }
}
