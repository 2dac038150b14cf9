package io.jvhost.net;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.*;

class FramePoolTest {
    @Test
    void layoutIsCacheLineAligned() {
        try (FramePool p = new FramePool(8, 1514, 100)) {
            assertEquals(128, p.headroom());
            assertEquals(1536, p.frameCapacity());
            assertEquals(128 + 1536 + 64, p.bufferSize());
            FramePool.Frame f = p.acquire();
            assertEquals(0, f.buffer().address() % FramePool.CACHE_LINE);
            assertEquals(0, f.metaOffset() % FramePool.CACHE_LINE);
            assertEquals(p.headroom(), f.dataOffset());
            assertEquals(0, f.dataLen());
            assertEquals(1536, f.room());
            p.release(f);
        }
    }

    @Test
    void exhaustsAndRecycles() {
        try (FramePool p = new FramePool(4, 64)) {
            List<FramePool.Frame> got = new ArrayList<>();
            Set<Integer> idx = new HashSet<>();
            for (int i = 0; i < 4; i++) {
                FramePool.Frame f = p.acquire();
                assertNotNull(f);
                got.add(f);
                idx.add(f.index());
            }
            assertEquals(4, idx.size());
            assertNull(p.acquire());
            assertEquals(0, p.available());
            FramePool.Frame f0 = got.get(0);
            f0.dataLen(10);
            f0.push(12);
            p.release(f0);
            FramePool.Frame again = p.acquire();
            assertSame(f0, again);
            assertEquals(p.headroom(), again.dataOffset()); // reset on acquire
            assertEquals(0, again.dataLen());
        }
    }

    @Test
    void pushPrependsInPlace() {
        try (FramePool p = new FramePool(2, 64, 16)) {
            FramePool.Frame f = p.acquire();
            f.buffer().set(ValueLayout.JAVA_BYTE, f.dataOffset(), (byte) 7);
            f.dataLen(1);
            int off = f.push(12);
            assertEquals(p.headroom() - 12, off);
            assertEquals(13, f.dataLen());
            assertEquals(7, f.data().get(ValueLayout.JAVA_BYTE, 12));
            assertThrows(IndexOutOfBoundsException.class, () -> f.push(p.headroom()));
            assertThrows(IndexOutOfBoundsException.class, () -> f.dataLen(1000));
        }
    }

    @Test
    void rejectsForeignAndDoubleRelease() {
        try (FramePool p = new FramePool(2, 64); FramePool q = new FramePool(2, 64)) {
            FramePool.Frame f = q.acquire();
            assertThrows(IllegalArgumentException.class, () -> p.release(f));
            q.release(f);
            assertThrows(IllegalStateException.class, () -> q.release(f));
        }
    }

    @Test
    @Timeout(20)
    void concurrentAcquireReleaseNeverSharesAFrame() throws Exception {
        try (FramePool p = new FramePool(16, 64)) {
            int threads = 4;
            AtomicBoolean bad = new AtomicBoolean();
            int[] owner = new int[16];
            Thread[] ts = new Thread[threads];
            for (int t = 0; t < threads; t++) {
                int id = t + 1;
                ts[t] = new Thread(() -> {
                    for (int i = 0; i < 50_000; i++) {
                        FramePool.Frame f = p.acquire();
                        if (f == null) {
                            continue;
                        }
                        f.buffer().set(ValueLayout.JAVA_INT, f.dataOffset(), id);
                        Thread.onSpinWait();
                        if (f.buffer().get(ValueLayout.JAVA_INT, f.dataOffset()) != id) {
                            bad.set(true);
                        }
                        owner[f.index()] = id;
                        p.release(f);
                    }
                });
                ts[t].start();
            }
            for (Thread t : ts) {
                t.join();
            }
            assertFalse(bad.get());
            assertEquals(16, p.available());
        }
    }
}
