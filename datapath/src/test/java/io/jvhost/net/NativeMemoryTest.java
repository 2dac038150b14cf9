package io.jvhost.net;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;

class NativeMemoryTest {
    @Test
    void gatherAndScatterAcrossIovecs() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment b1 = a.allocate(5);
            MemorySegment b2 = a.allocate(1);
            MemorySegment b3 = a.allocate(10);
            MemorySegment iovs = a.allocate(3L * NativeMemory.IOVEC_SIZE);
            NativeMemory.iovSet(iovs, 0, b1.address(), 5);
            NativeMemory.iovSet(iovs, 1, b2.address(), 1);
            NativeMemory.iovSet(iovs, 2, b3.address(), 10);
            assertEquals(16, NativeMemory.iovTotal(iovs, 3));
            MemorySegment src = a.allocate(16);
            for (int i = 0; i < 16; i++) {
                src.set(ValueLayout.JAVA_BYTE, i, (byte) i);
            }
            assertEquals(16, NativeMemory.scatter(src, 0, iovs, 3, 0, 100));
            assertEquals(5, b2.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(15, b3.get(ValueLayout.JAVA_BYTE, 9));
            MemorySegment dst = a.allocate(16);
            assertEquals(8, NativeMemory.gather(iovs, 3, 4, dst, 2, 8));
            for (int i = 0; i < 8; i++) {
                assertEquals(4 + i, dst.get(ValueLayout.JAVA_BYTE, 2 + i));
            }
            assertEquals(0, NativeMemory.gather(iovs, 3, 16, dst, 0, 8));
        }
    }
}
