package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

class MmanTest {
    private static final long PAGE = 4096;

    @Test
    void memfdMappedTwiceSeesTheSameBytes() {
        int fd = Mman.memfdCreate("jvhost-test");
        MemorySegment m1 = null;
        MemorySegment m2 = null;
        try {
            Mman.ftruncate(fd, 4 * PAGE);
            m1 = Mman.mmapShared(fd, 0, 4 * PAGE);
            m2 = Mman.mmapShared(fd, 0, 4 * PAGE);
            assertEquals(4 * PAGE, m1.byteSize());
            assertNotEquals(m1.address(), m2.address());
            m1.set(JAVA_LONG, 3 * PAGE + 8, 0x1122_3344_5566_7788L);
            assertEquals(0x1122_3344_5566_7788L, m2.get(JAVA_LONG, 3 * PAGE + 8));
            m2.set(JAVA_LONG, 0, -1L);
            assertEquals(-1L, m1.get(JAVA_LONG, 0));
        } finally {
            if (m1 != null) {
                Mman.munmap(m1);
            }
            if (m2 != null) {
                Mman.munmap(m2);
            }
            Fds.close(fd);
        }
    }

    @Test
    void offsetMappingSeesTheRightPage() {
        int fd = Mman.memfdCreate("jvhost-test-off");
        try {
            Mman.ftruncate(fd, 2 * PAGE);
            MemorySegment whole = Mman.mmapShared(fd, 0, 2 * PAGE);
            MemorySegment second = Mman.mmapShared(fd, PAGE, PAGE);
            try {
                whole.set(JAVA_LONG, PAGE, 99L);
                assertEquals(99L, second.get(JAVA_LONG, 0));
                assertEquals(PAGE, second.byteSize());
            } finally {
                Mman.munmap(whole);
                Mman.munmap(second);
            }
        } finally {
            Fds.close(fd);
        }
    }

    @Test
    void misalignedOffsetIsEinval() {
        int fd = Mman.memfdCreate("jvhost-test-bad");
        try {
            Mman.ftruncate(fd, 2 * PAGE);
            NativeException e = assertThrows(NativeException.class, () -> Mman.mmapShared(fd, 100, PAGE));
            assertEquals(Errno.EINVAL, e.errno());
            assertEquals("mmap", e.call());
        } finally {
            Fds.close(fd);
        }
    }
}
