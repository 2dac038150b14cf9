package io.jvhost.nativ;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * Shared plumbing of the syscall layer: symbol lookup, downcall handle creation (always capturing
 * errno), and the per-thread scratch segment that holds the captured errno plus a few bytes of
 * argument space (eventfd counter, int out-parameters), so hot-path calls allocate nothing.
 *
 * <p>Threading: every method is thread-safe; the scratch segment belongs to the calling thread and
 * is only used for the duration of one wrapper call (wrappers never call each other while holding
 * a pointer into it, except where documented in that wrapper).
 */
final class Native {
    static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LOOKUP = LINKER.defaultLookup();

    static final String ACCESS_FLAG = "--enable-native-access=ALL-UNNAMED";

    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(
            java.lang.foreign.MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");

    /** Offset of an 8-byte aligned scratch word after the capture state. */
    static final long SCRATCH_OFFSET = align(CAPTURE_LAYOUT.byteSize(), 8);
    /** Bytes of scratch after {@link #SCRATCH_OFFSET}. */
    static final long SCRATCH_SIZE = 64;

    /**
     * Whether handles marked "never blocks" are linked with {@code Linker.Option.critical(false)}
     * (no thread-state transition, but the thread holds off safepoints for the call). Property
     * {@code jvhost.native.critical}, default false: on the test machine the saving was lost in the
     * syscall's own cost (~0.5-1 µs, see bench/RESULTS-syscalls.md), so the conservative linkage
     * stays the default until a quiet machine shows a gain.
     */
    static final boolean USE_CRITICAL = Boolean.getBoolean("jvhost.native.critical");

    /*
     * Each thread gets its own small segment for the lifetime of the thread. Arena.ofAuto: freed by
     * the GC once the thread (and so its ThreadLocalMap entry) is gone.
     */
    private static final ThreadLocal<MemorySegment> SCRATCH = ThreadLocal.withInitial(
            () -> Arena.ofAuto().allocate(SCRATCH_OFFSET + SCRATCH_SIZE, 8));

    /** Lazily linked so that a missing native-access flag surfaces in the first syscall class. */
    private static final class StrError {
        static final MethodHandle STRERROR = plainDowncall("strerror",
                FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    }

    private Native() {
    }

    private static long align(long v, long a) {
        return (v + a - 1) & -a;
    }

    /** The calling thread's scratch segment: capture state at 0, scratch at {@link #SCRATCH_OFFSET}. */
    static MemorySegment scratch() {
        return SCRATCH.get();
    }

    /** The errno captured into {@code scratch} by the last call made with it. */
    static int errno(MemorySegment scratch) {
        return (int) ERRNO.get(scratch, 0L);
    }

    /** Fails with the exact JVM flag to use when this code may not call native functions. */
    static void checkNativeAccess() {
        if (!Native.class.getModule().isNativeAccessEnabled()) {
            throw new IllegalStateException("jvhost calls Linux system calls through java.lang.foreign and needs "
                    + "native access: start the JVM with " + ACCESS_FLAG
                    + " (or add 'Enable-Native-Access: ALL-UNNAMED' to the launching jar's manifest)");
        }
    }

    /**
     * A downcall handle for libc function {@code name} whose first parameter is the capture-state
     * segment (errno). {@code neverBlocks}: the call returns promptly whatever the fd state, so it
     * may be linked as a critical call (see {@link #USE_CRITICAL}).
     */
    @SuppressWarnings("restricted")
    static MethodHandle downcall(String name, FunctionDescriptor fd, boolean neverBlocks, Linker.Option... extra) {
        checkNativeAccess();
        MemorySegment addr = LOOKUP.find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc symbol not found: " + name));
        Linker.Option[] opts = new Linker.Option[extra.length + (neverBlocks && USE_CRITICAL ? 2 : 1)];
        opts[0] = CAPTURE_ERRNO;
        System.arraycopy(extra, 0, opts, 1, extra.length);
        if (neverBlocks && USE_CRITICAL) {
            opts[opts.length - 1] = Linker.Option.critical(false);
        }
        return LINKER.downcallHandle(addr, fd, opts);
    }

    /**
     * Like {@link #downcall} but {@code critical} decides the linkage directly (not
     * {@link #USE_CRITICAL}): for handles whose callers guarantee a non-blocking fd.
     */
    @SuppressWarnings("restricted")
    static MethodHandle downcallAlways(String name, FunctionDescriptor fd, boolean critical, Linker.Option... extra) {
        checkNativeAccess();
        MemorySegment addr = LOOKUP.find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc symbol not found: " + name));
        Linker.Option[] opts = java.util.Arrays.copyOf(extra, extra.length + (critical ? 2 : 1));
        opts[extra.length] = CAPTURE_ERRNO;
        if (critical) {
            opts[extra.length + 1] = Linker.Option.critical(false);
        }
        return LINKER.downcallHandle(addr, fd, opts);
    }

    /**
     * A downcall handle without errno capture: for functions that do not set errno, and for fast
     * paths that retry a failed call through a capturing handle to learn why (a capture segment
     * costs an allocation wherever the JIT does not inline the whole downcall into its caller).
     */
    @SuppressWarnings("restricted")
    static MethodHandle plainDowncall(String name, FunctionDescriptor fd, Linker.Option... options) {
        checkNativeAccess();
        MemorySegment addr = LOOKUP.find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc symbol not found: " + name));
        return LINKER.downcallHandle(addr, fd, options);
    }

    /** Gives a raw address returned by libc (mmap) a size; the caller owns the lifetime. */
    @SuppressWarnings("restricted")
    static MemorySegment view(MemorySegment p, long byteSize) {
        return p.reinterpret(byteSize);
    }

    /** Views a C string returned by libc (static storage) as a Java string. */
    @SuppressWarnings("restricted")
    private static String cString(MemorySegment p) {
        return p.equals(MemorySegment.NULL) ? null : p.reinterpret(Long.MAX_VALUE).getString(0);
    }

    /**
     * {@code strerror(errno)}; called only when an exception message is built, under a lock because
     * glibc may format unknown numbers into a shared buffer.
     */
    static synchronized String strerror(int errno) {
        try {
            String s = cString((MemorySegment) StrError.STRERROR.invokeExact(errno));
            return s != null ? s : "Unknown error " + errno;
        } catch (Throwable t) {
            return "Unknown error " + errno;
        }
    }

    /** Wraps a Throwable escaping invokeExact (only Errors/RuntimeExceptions can). */
    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException re) {
            return re;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException("unexpected checked exception from a downcall", t);
    }
}
