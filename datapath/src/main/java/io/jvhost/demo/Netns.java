package io.jvhost.demo;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Creates sockets inside a named network namespace. {@code setns} changes only the
 * calling thread's namespace, so the callable runs on a fresh thread that enters the namespace and
 * dies afterwards; sockets it opens stay in that namespace and can be used from any thread.
 */
public final class Netns {
    private static final int CLONE_NEWNET = 0x40000000;
    private static final int O_RDONLY = 0;
    private static final MethodHandle OPEN;
    private static final MethodHandle SETNS;
    private static final MethodHandle CLOSE;

    static {
        Linker l = Linker.nativeLinker();
        OPEN = downcall(l, "open", FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT,
                ValueLayout.JAVA_INT), Linker.Option.firstVariadicArg(2));
        SETNS = downcall(l, "setns", FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
        CLOSE = downcall(l, "close", FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    }

    @SuppressWarnings("restricted")
    private static MethodHandle downcall(Linker l, String name, FunctionDescriptor d, Linker.Option... o) {
        return l.downcallHandle(l.defaultLookup().find(name).orElseThrow(), d, o);
    }

    private Netns() {
    }

    /** Runs {@code c} on a fresh thread inside network namespace {@code ns} and returns its result. */
    public static <T> T in(String ns, Callable<T> c) {
        AtomicReference<T> out = new AtomicReference<>();
        AtomicReference<Throwable> err = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try (Arena a = Arena.ofConfined()) {
                int fd = (int) OPEN.invokeExact(a.allocateFrom("/var/run/netns/" + ns), O_RDONLY, 0);
                if (fd < 0) {
                    throw new IllegalStateException("cannot open netns " + ns);
                }
                int r = (int) SETNS.invokeExact(fd, CLONE_NEWNET);
                int ignored = (int) CLOSE.invokeExact(fd);
                if (r != 0) {
                    throw new IllegalStateException("setns " + ns + " failed");
                }
                out.set(c.call());
            } catch (Throwable e) {
                err.set(e);
            }
        }, "netns-" + ns);
        t.start();
        try {
            t.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
        if (err.get() != null) {
            throw new IllegalStateException("in netns " + ns + ": " + err.get(), err.get());
        }
        return out.get();
    }
}
