package io.jvhost.net;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * A stand-in for a tap in unit tests (no root): an AF_UNIX SOCK_SEQPACKET pair keeps record
 * boundaries, so one readv returns one frame and a frame longer than the iovecs is cut (the rest
 * discarded), as a tap does.
 */
public final class SeqPacketPair {
    private static final int AF_UNIX = 1;
    private static final int SOCK_SEQPACKET = 5;
    private static final int SOCK_CLOEXEC = 02000000;
    private static final MethodHandle SOCKETPAIR = socketpairHandle();

    private SeqPacketPair() {
    }

    @SuppressWarnings("restricted")
    private static MethodHandle socketpairHandle() {
        Linker l = Linker.nativeLinker();
        return l.downcallHandle(l.defaultLookup().find("socketpair").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.ADDRESS));
    }

    /** A connected pair (close-on-exec, blocking): {@code [a, b]}. */
    public static int[] open() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment sv = a.allocate(8, 4);
            int r = (int) SOCKETPAIR.invokeExact(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
            if (r != 0) {
                throw new IllegalStateException("socketpair(AF_UNIX, SOCK_SEQPACKET) failed");
            }
            return new int[] {sv.get(ValueLayout.JAVA_INT, 0), sv.get(ValueLayout.JAVA_INT, 4)};
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
