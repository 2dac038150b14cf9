package io.jvhost.bench;

import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.nativ.Iovec;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

import java.lang.foreign.MemorySegment;

/**
 * TX in batches, the back-end's side only: the guest posts {@value #BATCH} frames at once and one
 * {@code TxEngine.process} sends them (one op = one frame), in syscall mode (one {@code writev} per
 * frame) or io_uring mode (one enter per batch). {@link #plainWritev} is the reference a Java
 * back-end cannot beat with system calls: the same frame written with {@value #BATCH} bare
 * {@code Fds.writev} calls, no virtqueue at all. Same tap set-up as {@link EngineBench} (its
 * {@code tx}/{@code rx} benchmarks are inherited: select with a regex such as
 * {@code 'TxBatchBench.(txBatch|plainWritev)'}).
 */
public class TxBatchBench extends EngineBench {
    static final int BATCH = 32;

    /** {@code syscalls} or {@code uring}. */
    @Param({"syscalls", "uring"})
    String io;

    IoUring ring;
    MemorySegment iov;

    @Setup(Level.Trial)
    public void setupIo() {
        if (io.equals("uring")) {
            ring = IoUring.create(64);
            tx.useRing(ring, arena);
        }
        iov = Iovec.allocate(arena, 1);
        Iovec.set(iov, 0, mem.at(txAddrs[0], txLens[0]).address(), txLens[0]);
    }

    @TearDown(Level.Trial)
    public void teardownIo() {
        if (ring != null) {
            ring.close();
        }
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public int txBatch(ThreadAlloc alloc) {
        for (int i = 0; i < BATCH; i++) {
            gTx.add(txAddrs, txLens, 1, 0, false);
        }
        gTx.publish();
        int n = tx.process(64, System.nanoTime());
        while (gTx.pollUsed() >= 0) {
            // reclaimed: the same buffer is posted again next time
        }
        return n;
    }

    /** {@link #plainWritev} with the iovec array passed as an address, critical linkage or not. */
    public long rawWritev(boolean critical) {
        long s = 0;
        int fd = tap.fd(0);
        long a = iov.address();
        for (int i = 0; i < BATCH; i++) {
            s += Fds.writevNonBlocking(fd, a, 1, critical);
        }
        return s;
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long plainWritev() {
        long s = 0;
        int fd = tap.fd(0);
        for (int i = 0; i < BATCH; i++) {
            s += Fds.writev(fd, iov, 1);
        }
        return s;
    }
}
