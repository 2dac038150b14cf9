package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;

class VirtioNetHdrTest {
    @Test
    void fieldsAreLittleEndianAtTheirOffsets() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(32);
            long base = 3; // unaligned on purpose
            VirtioNetHdr.flags(s, base, VirtioNetHdr.FLAG_NEEDS_CSUM);
            VirtioNetHdr.gsoType(s, base, VirtioNetHdr.GSO_TCPV4 | VirtioNetHdr.GSO_ECN);
            VirtioNetHdr.hdrLen(s, base, 0x1234);
            VirtioNetHdr.gsoSize(s, base, 1448);
            VirtioNetHdr.csumStart(s, base, 34);
            VirtioNetHdr.csumOffset(s, base, 16);
            VirtioNetHdr.numBuffers(s, base, 0xfffe);
            byte[] b = s.asSlice(base, VirtioNetHdr.SIZE).toArray(ValueLayout.JAVA_BYTE);
            assertEquals(1, b[0]);
            assertEquals((byte) 0x81, b[1]);
            assertEquals(0x34, b[2]);
            assertEquals(0x12, b[3]);
            assertEquals((byte) (1448 & 0xff), b[4]);
            assertEquals(1448 >> 8, b[5]);
            assertEquals(34, b[6]);
            assertEquals(16, b[8]);
            assertEquals((byte) 0xfe, b[10]);
            assertEquals((byte) 0xff, b[11]);
            assertEquals(0xfffe, VirtioNetHdr.numBuffers(s, base));
            assertEquals(VirtioNetHdr.GSO_TCPV4, VirtioNetHdr.gsoProtocol(VirtioNetHdr.gsoType(s, base)));
            assertEquals(1448, VirtioNetHdr.gsoSize(s, base));
            VirtioNetHdr.clear(s, base, VirtioNetHdr.SIZE);
            assertEquals(0, VirtioNetHdr.flags(s, base));
            assertEquals(0, VirtioNetHdr.numBuffers(s, base));
        }
    }

    @Test
    void headerSizeFollowsFeatures() {
        assertEquals(10, VirtioNetHdr.size(0));
        assertEquals(12, VirtioNetHdr.size(VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)));
        assertEquals(12, VirtioNetHdr.size(VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF)));
        assertEquals(10, VirtioNetHdr.size(VirtioFeatures.bit(VirtioFeatures.NET_F_GUEST_TSO4)));
        assertEquals(65562, VirtioNetHdr.MAX_GSO_BUFFER);
    }
}
