package io.jvhost.net;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PacketCaptureTest {
    @Test
    @Timeout(20)
    void writesAValidPcapFile(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("c.pcap");
        long before = System.currentTimeMillis() / 1000;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment frame = a.allocate(200);
            for (int i = 0; i < 200; i++) {
                frame.set(ValueLayout.JAVA_BYTE, i, (byte) i);
            }
            // Frame 2 as a vnet header + frame split across two iovecs.
            MemorySegment hdrAndStart = a.allocate(12 + 50);
            MemorySegment rest = a.allocate(50);
            MemorySegment.copy(frame, 0, hdrAndStart, 12, 50);
            MemorySegment.copy(frame, 50, rest, 0, 50);
            MemorySegment iovs = a.allocate(2L * NativeMemory.IOVEC_SIZE);
            NativeMemory.iovSet(iovs, 0, hdrAndStart.address(), 62);
            NativeMemory.iovSet(iovs, 1, rest.address(), 50);
            try (PacketCapture c = new PacketCapture(file, 128, 8)) {
                assertTrue(c.capture(0, FrameMeta.DIR_RX, frame, 0, 200)); // truncated to 128
                assertTrue(c.captureIovecs(1, FrameMeta.DIR_TX, iovs, 2, 12, 100));
            }
        }
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(PacketCapture.MAGIC_NANOS, b.getInt());
        assertEquals(2, b.getShort());
        assertEquals(4, b.getShort());
        b.getInt();
        b.getInt();
        assertEquals(128, b.getInt());
        assertEquals(1, b.getInt());
        int sec = b.getInt();
        int nsec = b.getInt();
        assertTrue(sec >= before && sec <= before + 60, "timestamp " + sec);
        assertTrue(nsec >= 0 && nsec < 1_000_000_000);
        assertEquals(128, b.getInt());
        assertEquals(200, b.getInt());
        for (int i = 0; i < 128; i++) {
            assertEquals((byte) i, b.get());
        }
        b.getInt();
        b.getInt();
        assertEquals(100, b.getInt());
        assertEquals(100, b.getInt());
        for (int i = 0; i < 100; i++) {
            assertEquals((byte) i, b.get());
        }
        assertEquals(0, b.remaining());
    }

    @Test
    @Timeout(20)
    void emptyPoolCountsDropsAndNeverBlocks(@TempDir Path dir) throws Exception {
        try (Arena a = Arena.ofConfined(); PacketCapture c = new PacketCapture(dir.resolve("d.pcap"), 64, 2)) {
            MemorySegment frame = a.allocate(64);
            int ok = 0;
            for (int i = 0; i < 10_000; i++) {
                ok += c.capture(0, FrameMeta.DIR_TX, frame, 0, 64) ? 1 : 0;
            }
            assertEquals(10_000, ok + c.dropped());
        }
    }
}
