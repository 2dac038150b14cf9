package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.cpu_set_t;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.BitSet;

/**
 * Thread ids and CPU affinity: {@code gettid}, {@code sched_setaffinity}, {@code sched_getaffinity},
 * {@code sched_getcpu}.
 * The worker pool pins each worker thread to a CPU with these.
 *
 * <p>A CPU set travels as a {@link BitSet} (bit {@code n} = CPU {@code n}). In C it is an array of
 * {@code unsigned long} words, CPU {@code n} at bit {@code n % 64} of word {@code n / 64}: exactly
 * {@link BitSet#toLongArray()}. The kernel's set may be larger than glibc's {@code cpu_set_t}
 * (1024 CPUs) on very large machines, so {@link #affinity} grows its buffer on
 * EINVAL like glibc's {@code CPU_ALLOC} callers do.
 *
 * <p>Thread id 0 means the calling thread. Control-plane calls (except {@link #currentCpu}): they
 * allocate a small confined buffer per call. Thread-safe.
 */
public final class Sched {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    /** CPUs in glibc's {@code cpu_set_t} ({@code CPU_SETSIZE}). */
    public static final int CPU_SETSIZE = Linux.CPU_SETSIZE();

    /** Bytes of glibc's {@code cpu_set_t}: the smallest buffer the calls are given. */
    private static final long SET_BYTES = cpu_set_t.sizeof();
    /** Largest set {@link #affinity} tries: 2^18 CPUs, far more than any kernel's NR_CPUS. */
    private static final long MAX_SET_BYTES = 1L << 15;

    private static final MethodHandle GETTID = Native.plainDowncall("gettid", FunctionDescriptor.of(JAVA_INT));
    private static final MethodHandle SETAFFINITY = Native.downcall("sched_setaffinity",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS), true);
    private static final MethodHandle GETAFFINITY = Native.downcall("sched_getaffinity",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS), true);
    /*
     * Never linked critical: callers rely on the return transition to Java (see currentCpu). glibc
     * answers from the thread's rseq area or the vDSO, without a system call.
     */
    private static final MethodHandle GETCPU = Native.plainDowncall("sched_getcpu", FunctionDescriptor.of(JAVA_INT));

    private Sched() {
    }

    /** The kernel thread id of the calling thread (what {@code /proc/thread-self} names). Never fails. */
    public static int gettid() {
        try {
            return (int) GETTID.invokeExact();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * Restricts thread {@code tid} (0: the calling thread) to the CPUs in {@code cpus}.
     *
     * @throws IllegalArgumentException {@code tid} negative, {@code cpus} empty
     * @throws NativeException          EINVAL (no CPU of the set is online and allowed, e.g. by the
     *                                  cgroup's cpuset), ESRCH (no such thread), EPERM (another
     *                                  user's thread without CAP_SYS_NICE)
     */
    public static void setAffinity(int tid, BitSet cpus) {
        checkTid(tid);
        if (cpus.isEmpty()) {
            throw new IllegalArgumentException("empty CPU set for thread " + tid);
        }
        long[] words = cpus.toLongArray();
        long bytes = Math.max(SET_BYTES, 8L * words.length);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment set = a.allocate(bytes, 8);
            for (int i = 0; i < words.length; i++) {
                set.setAtIndex(JAVA_LONG, i, words[i]);
            }
            MemorySegment s = Native.scratch();
            int r;
            try {
                r = (int) SETAFFINITY.invokeExact(s, tid, bytes, set);
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
            if (r != 0) {
                throw NativeException.of("sched_setaffinity", "tid " + tid + ", cpus " + cpus, Native.errno(s));
            }
        }
    }

    /**
     * The CPU the calling thread is running on ({@code sched_getcpu}), or -1 where the kernel cannot
     * tell. No system call on current glibc; no allocation.
     *
     * <p>The call is an ordinary (non-critical) downcall, so its return to Java is a thread-state
     * transition at which HotSpot delivers a pending asynchronous exception — such as the
     * {@code InternalError} for a fault in an earlier unsafe memory access, which the JVM otherwise
     * raises at the next safepoint poll, wherever that is. The worker pool calls it after each queue
     * pair's share of a cycle so that a guest-memory fault surfaces in that pair's code.
     */
    public static int currentCpu() {
        try {
            return (int) GETCPU.invokeExact();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The CPUs the calling thread may run on. */
    public static BitSet affinity() {
        return affinity(0);
    }

    /**
     * The CPUs thread {@code tid} (0: the calling thread) may run on.
     *
     * @throws NativeException ESRCH (no such thread)
     */
    public static BitSet affinity(int tid) {
        checkTid(tid);
        for (long bytes = SET_BYTES; ; bytes *= 2) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment set = a.allocate(bytes, 8);
                MemorySegment s = Native.scratch();
                int r;
                try {
                    r = (int) GETAFFINITY.invokeExact(s, tid, bytes, set);
                } catch (Throwable t) {
                    throw Native.rethrow(t);
                }
                if (r == 0) {
                    return BitSet.valueOf(set.toArray(JAVA_LONG));
                }
                int e = Native.errno(s);
                // EINVAL: the kernel's cpumask is larger than the buffer; try a larger one.
                if (e != Errno.EINVAL || bytes >= MAX_SET_BYTES) {
                    throw NativeException.of("sched_getaffinity", "tid " + tid, e);
                }
            }
        }
    }

    private static void checkTid(int tid) {
        if (tid < 0) {
            throw new IllegalArgumentException("thread id " + tid);
        }
    }
}
