package io.jvhost.memory;

import io.jvhost.nativ.Errno;
import io.jvhost.nativ.NativeException;

/**
 * An access to mapped guest memory faulted: the pages behind a region are gone although the
 * mapping is still in place. A front-end causes this by shrinking ({@code ftruncate}) a file it
 * passed with SET_MEM_TABLE / ADD_MEM_REG after we mapped it — possible whenever the file is not
 * sealed against shrinking ({@code F_SEAL_SHRINK}): hugetlbfs files, DPDK's memory, memfds created
 * without seals. The kernel answers {@code EFAULT} to a readv/writev whose iovecs point there; a
 * Java access raises SIGBUS, which the JVM turns into an {@link InternalError} ("a fault occurred in
 * an unsafe memory access operation"). Either way the queue pair that touched the memory is marked
 * broken ({@code VirtqError.MEMORY_FAULT}); the process and other devices keep running
 * (docs/VHOST-USER.md, "Hostile front-end: shrunk memory").
 *
 * <p>Thrown by the engines for {@code EFAULT}; no stack trace (the message says where).
 */
public final class MemoryFault extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public MemoryFault(String message) {
        super(message, null, false, false);
    }

    /**
     * Whether {@code t} (or one of its causes) is a guest-memory fault: a {@link MemoryFault}, a
     * {@link NativeException} with {@code EFAULT}, or the JVM's {@link InternalError} for a fault in
     * an unsafe (FFM) memory access.
     */
    public static boolean is(Throwable t) {
        int depth = 0;
        for (Throwable c = t; c != null && depth < 8; c = c.getCause(), depth++) {
            if (c instanceof MemoryFault) {
                return true;
            }
            if (c instanceof NativeException ne && ne.errno() == Errno.EFAULT) {
                return true;
            }
            if (c instanceof InternalError && c.getMessage() != null
                    && c.getMessage().contains("fault occurred") && c.getMessage().contains("memory access")) {
                return true;
            }
        }
        return false;
    }
}
