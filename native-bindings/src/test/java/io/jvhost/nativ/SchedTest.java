package io.jvhost.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link Sched} against what the kernel reports in procfs: {@code /proc/thread-self} names the
 * calling thread's id, {@code Cpus_allowed_list} in {@code /proc/self/task/TID/status} its affinity.
 * Every test that pins does it on a thread of its own, never on the test runner's thread.
 */
@Timeout(30)
class SchedTest {

    @Test
    void gettidIsTheThreadProcfsNames() throws Exception {
        assertEquals(procTid(), Sched.gettid());
        int[] other = new int[2];
        Thread t = Thread.ofPlatform().start(() -> {
            other[0] = Sched.gettid();
            try {
                other[1] = procTid();
            } catch (IOException e) {
                other[1] = -1;
            }
        });
        t.join();
        assertEquals(other[1], other[0]);
        assertNotEquals(Sched.gettid(), other[0], "another thread has another id");
    }

    @Test
    void affinityIsTheAllowedListProcfsShows() throws Exception {
        BitSet mine = Sched.affinity();
        assertFalse(mine.isEmpty());
        assertEquals(allowedList(Sched.gettid()), mine);
        assertEquals(mine, Sched.affinity(Sched.gettid()), "tid 0 and the own tid name the same thread");
    }

    @Test
    void pinningTheCallingThreadRestrictsItToThatCpu() throws Exception {
        BitSet allowed = Sched.affinity();
        int last = allowed.length() - 1;
        CompletableFuture<BitSet[]> seen = new CompletableFuture<>();
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                Sched.setAffinity(0, single(last));
                seen.complete(new BitSet[] {Sched.affinity(), allowedList(Sched.gettid()),
                    single(Sched.currentCpu())});
            } catch (Throwable e) {
                seen.completeExceptionally(e);
            }
        });
        BitSet[] r = seen.get(10, TimeUnit.SECONDS);
        t.join();
        assertEquals(single(last), r[0], "sched_getaffinity after pinning");
        assertEquals(single(last), r[1], "Cpus_allowed_list after pinning");
        assertEquals(single(last), r[2], "sched_getcpu of a pinned thread is its one CPU");
        assertEquals(allowed, Sched.affinity(), "the test runner's thread is untouched");
    }

    @Test
    void anotherThreadIsPinnedByItsTid() throws Exception {
        BitSet allowed = Sched.affinity();
        int first = allowed.nextSetBit(0);
        AtomicInteger tid = new AtomicInteger();
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        Thread t = Thread.ofPlatform().start(() -> {
            tid.set(Sched.gettid());
            started.countDown();
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        try {
            assertTrue(started.await(10, TimeUnit.SECONDS));
            assertEquals(allowed, Sched.affinity(tid.get()), "a new thread inherits its creator's set");
            Sched.setAffinity(tid.get(), single(first));
            assertEquals(single(first), Sched.affinity(tid.get()));
            assertEquals(single(first), allowedList(tid.get()));
        } finally {
            done.countDown();
            t.join();
        }
    }

    @Test
    void badArgumentsAndKernelRefusalsAreReportedByName() throws Exception {
        assertThrows(IllegalArgumentException.class, () -> Sched.setAffinity(0, new BitSet()));
        assertThrows(IllegalArgumentException.class, () -> Sched.affinity(-1));
        // No thread has this id (pid_max is at most 2^22).
        NativeException noThread = assertThrows(NativeException.class, () -> Sched.affinity(Integer.MAX_VALUE));
        assertEquals(Errno.ESRCH, noThread.errno());
        assertTrue(noThread.getMessage().startsWith("sched_getaffinity(tid 2147483647): ESRCH"), noThread.getMessage());
        // Only CPUs that do not exist: the kernel refuses the set, and the thread keeps its own.
        BitSet absent = single(Sched.CPU_SETSIZE - 1);
        if (!Sched.affinity().get(Sched.CPU_SETSIZE - 1)) {
            CompletableFuture<Object> r = new CompletableFuture<>();
            Thread t = Thread.ofPlatform().start(() -> {
                BitSet before = Sched.affinity();
                try {
                    Sched.setAffinity(0, absent);
                    r.complete("accepted");
                } catch (NativeException e) {
                    r.complete(e.errno() == Errno.EINVAL && Sched.affinity().equals(before) ? "EINVAL, unchanged" : e.toString());
                }
            });
            assertEquals("EINVAL, unchanged", r.get(10, TimeUnit.SECONDS));
            t.join();
        }
    }

    private static BitSet single(int cpu) {
        BitSet b = new BitSet();
        b.set(cpu);
        return b;
    }

    /** The calling thread's id as procfs names it: /proc/thread-self links to "PID/task/TID". */
    private static int procTid() throws IOException {
        String link = Files.readSymbolicLink(Path.of("/proc/thread-self")).toString();
        return Integer.parseInt(link.substring(link.lastIndexOf('/') + 1));
    }

    /** Cpus_allowed_list of a thread of this process, e.g. "0-1,4". */
    private static BitSet allowedList(int tid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/task/" + tid + "/status"))) {
            if (line.startsWith("Cpus_allowed_list:")) {
                BitSet b = new BitSet();
                for (String range : line.substring(line.indexOf(':') + 1).trim().split(",")) {
                    String[] ends = range.split("-");
                    int lo = Integer.parseInt(ends[0]);
                    int hi = ends.length > 1 ? Integer.parseInt(ends[1]) : lo;
                    b.set(lo, hi + 1);
                }
                return b;
            }
        }
        throw new IOException("no Cpus_allowed_list for thread " + tid);
    }
}
