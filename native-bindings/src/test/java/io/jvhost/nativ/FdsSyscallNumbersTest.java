package io.jvhost.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.jvhost.nativ.gen.Linux;
import org.junit.jupiter.api.Test;

/**
 * The syscall numbers {@link Fds} passes to libc's {@code syscall} for its non-blocking raw I/O,
 * against {@code sys/syscall.h} as jextract read it.
 */
class FdsSyscallNumbersTest {

    @Test
    void rawSyscallNumbersMatchTheKernelHeader() {
        assertEquals(Linux.SYS_read(), Fds.SYS_READ, "SYS_read");
        assertEquals(Linux.SYS_readv(), Fds.SYS_READV, "SYS_readv");
        assertEquals(Linux.SYS_writev(), Fds.SYS_WRITEV, "SYS_writev");
    }
}
