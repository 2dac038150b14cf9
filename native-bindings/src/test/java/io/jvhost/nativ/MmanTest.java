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

    /** Seals: a plain memfd reports F_SEAL_SEAL only; one created sealable takes F_SEAL_SHRINK and then refuses to shrink. */
    @Test
    void sealsOfMemfds() {
        int plain = Mman.memfdCreate("jvhost-test-plain");
        int sealable = Mman.memfdCreate("jvhost-test-sealable", Mman.MFD_ALLOW_SEALING);
        try {
            assertEquals(Fds.F_SEAL_SEAL, Fds.seals(plain));
            assertEquals(0, Fds.seals(sealable));
            Mman.ftruncate(sealable, 2 * PAGE);
            Fds.addSeals(sealable, Fds.F_SEAL_SHRINK | Fds.F_SEAL_GROW);
            assertEquals(Fds.F_SEAL_SHRINK | Fds.F_SEAL_GROW, Fds.seals(sealable));
            NativeException e = assertThrows(NativeException.class, () -> Mman.ftruncate(sealable, PAGE));
            assertEquals(Errno.EPERM, e.errno());
            int[] p = Fds.pipe(false);
            try {
                assertEquals(-1, Fds.seals(p[0]), "a pipe cannot be sealed");
            } finally {
                Fds.close(p[0]);
                Fds.close(p[1]);
            }
        } finally {
            Fds.close(plain);
            Fds.close(sealable);
        }
    }
}
