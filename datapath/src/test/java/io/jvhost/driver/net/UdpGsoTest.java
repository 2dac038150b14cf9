package io.jvhost.driver.net;

import io.jvhost.net.TxValidator;
import io.jvhost.net.VirtioNetHdr;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.util.List;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;

class UdpGsoTest {
    static final byte[] A = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    static final byte[] B = {2, 0, 0, 0, 0, 1};

    static byte[] payload(int n) {
        byte[] p = new byte[n];
        for (int i = 0; i < n; i++) {
            p[i] = (byte) (i * 7 + (i >>> 9));
        }
        return p;
    }

    /**
     * Builds a super-frame, cuts it the way the kernel's UDP GSO does — each datagram gets the new
     * UDP length, its check field is the sender's partial sum adjusted from the super length to the
     * datagram's (one's complement arithmetic), then completed over header and data — and checks
     * every resulting checksum against one computed from scratch for that datagram alone. It is what
     * makes the partial checksum the builder writes the right one; the privileged tests then see the
     * kernel accept the same frames.
     */
    @ParameterizedTest(name = "{0} -> {1}, {2} bytes, gso {3}")
    @CsvSource({
            "10.99.1.2, 10.98.1.2, 65507, 1472",
            "10.99.1.2, 10.98.1.2, 65000, 1200",
            "10.99.1.2, 10.98.1.2, 1000, 1472",
            "fd00:99:1::2, fd00:98:1::2, 65488, 1452",
            "fd00:99:1::2, fd00:98:1::2, 64001, 1300",
    })
    void buildsFramesTheKernelSegmentsIntoValidDatagrams(String s, String d, int len, int gso) {
        InetAddress src = UdpGso.address(s);
        InetAddress dst = UdpGso.address(d);
        byte[] data = payload(len);
        UdpGso.Frame f = UdpGso.build(A, B, src, dst, 40000, 9000, data, 0, len, gso);
        boolean v6 = !UdpGso.isV4(src);
        int l4 = 14 + (v6 ? 40 : 20);
        assertEquals(l4 + 8 + len, f.frame().length);
        assertEquals(VirtioNetHdr.FLAG_NEEDS_CSUM, f.flags());
        assertEquals(len > gso ? VirtioNetHdr.GSO_UDP_L4 : VirtioNetHdr.GSO_NONE, f.gsoType());
        assertEquals(l4, f.csumStart());
        assertEquals(6, f.csumOffset());
        assertEquals(l4 + 8, f.hdrLen());

        // The device's validator takes it.
        TxValidator v = new TxValidator(bit(F_VERSION_1) | bit(NET_F_CSUM) | bit(NET_F_HOST_USO), 1500);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(VirtioNetHdr.SIZE);
            VirtioNetHdr.flags(h, 0, f.flags());
            VirtioNetHdr.gsoType(h, 0, f.gsoType());
            VirtioNetHdr.hdrLen(h, 0, f.hdrLen());
            VirtioNetHdr.gsoSize(h, 0, f.gsoSize());
            VirtioNetHdr.csumStart(h, 0, f.csumStart());
            VirtioNetHdr.csumOffset(h, 0, f.csumOffset());
            assertNull(v.check(h, 0, f.frame().length));
        }

        // Taken apart: the payload in gso-sized datagrams, the last one short.
        List<UdpGso.Datagram> dg = UdpGso.datagrams(f.frame(), f.gsoType(), f.gsoSize());
        assertEquals((len + gso - 1) / gso, dg.size());
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        for (int i = 0; i < dg.size(); i++) {
            UdpGso.Datagram x = dg.get(i);
            assertEquals(i < dg.size() - 1 ? gso : len - gso * (dg.size() - 1), x.payload().length);
            assertEquals(src, x.src());
            assertEquals(dst, x.dst());
            assertEquals(40000, x.sport());
            assertEquals(9000, x.dport());
            all.writeBytes(x.payload());
        }
        assertArrayEquals(data, all.toByteArray());

        // The kernel's per-datagram checksum from the partial one, against a fresh computation.
        byte[] fr = f.frame();
        int superLen = Packets.u16(fr, l4 + 4);
        int partial = Packets.u16(fr, l4 + 6);
        for (int i = 0, p = 0; p < len; i++, p += gso) {
            int n = Math.min(gso, len - p);
            int newLen = 8 + n;
            int adjusted = Packets.fold((long) partial + (~superLen & 0xffff) + newLen);
            byte[] udp = new byte[newLen];
            udp[0] = fr[l4];
            udp[1] = fr[l4 + 1];
            udp[2] = fr[l4 + 2];
            udp[3] = fr[l4 + 3];
            udp[4] = (byte) (newLen >>> 8);
            udp[5] = (byte) newLen;
            udp[6] = (byte) (adjusted >>> 8);
            udp[7] = (byte) adjusted;
            System.arraycopy(data, p, udp, 8, n);
            int completed = Packets.checksum(udp, 0, newLen, 0);
            udp[6] = 0;
            udp[7] = 0;
            int fresh = Packets.checksum(udp, 0, newLen, UdpGso.pseudo(src, dst, newLen));
            assertEquals(fresh, completed, "datagram " + i);
        }
    }

    @ParameterizedTest
    @CsvSource({"10.0.0.1, 10.0.0.2", "fd00::1, fd00::2"})
    void aPlainDatagramIsOneDatagram(String s, String d) {
        byte[] data = payload(300);
        UdpGso.Frame f = UdpGso.build(A, B, UdpGso.address(s), UdpGso.address(d), 1, 2, data, 0, 300, 1472);
        List<UdpGso.Datagram> dg = UdpGso.datagrams(f.frame(), 0, 0);
        assertEquals(1, dg.size());
        assertArrayEquals(data, dg.get(0).payload());
        assertNull(UdpGso.datagrams(Packets.arp(Packets.ARP_REQUEST, A, 1, B, 2), 0, 0));
    }
}
