package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

class TxValidatorTest {
    private static final long ALL = bit(NET_F_CSUM) | bit(NET_F_HOST_TSO4) | bit(NET_F_HOST_TSO6) | bit(NET_F_HOST_ECN) | bit(NET_F_HOST_UFO)
            | bit(NET_F_HOST_USO) | bit(F_VERSION_1);

    /** features: ALL or NONE; expected: OK or a DropReason name. */
    @ParameterizedTest(name = "{0} flags={1} gso={2}/{3} csum={4}+{5} len={6} -> {7}")
    @CsvSource({
            "ALL, 0, 0, 0, 0, 0, 60, OK",
            "ALL, 0, 0, 0, 0, 0, 14, OK",
            "ALL, 0, 0, 0, 0, 0, 13, TX_TOO_SHORT",
            "ALL, 0, 0, 0, 0, 0, 0, TX_TOO_SHORT",
            "ALL, 0, 0, 0, 0, 0, 1518, OK",
            "ALL, 0, 0, 0, 0, 0, 1519, TX_TOO_LONG",
            "ALL, 1, 1, 1448, 34, 16, 65550, OK",
            "ALL, 1, 1, 1448, 34, 16, 65551, TX_TOO_LONG",
            "ALL, 1, 4, 1428, 54, 16, 30000, OK",
            "ALL, 1, 129, 1448, 34, 16, 30000, OK",
            "NONE, 1, 1, 1448, 34, 16, 30000, TX_BAD_GSO",
            "ALL, 1, 1, 0, 34, 16, 30000, TX_BAD_GSO",
            "ALL, 1, 2, 1448, 34, 16, 30000, TX_BAD_GSO",
            "ALL, 1, 6, 1448, 34, 16, 30000, TX_BAD_GSO",
            "ALL, 0, 128, 0, 0, 0, 60, TX_BAD_GSO",
            "ALL, 4, 0, 0, 0, 0, 60, TX_BAD_GSO",
            "ALL, 1, 0, 0, 34, 16, 60, OK",
            "ALL, 1, 0, 0, 34, 24, 60, OK",
            "ALL, 1, 0, 0, 34, 25, 60, TX_BAD_CSUM",
            "ALL, 1, 0, 0, 65535, 65535, 1000, TX_BAD_CSUM",
            "NONE, 1, 0, 0, 34, 16, 60, TX_BAD_CSUM",
            "NONE, 2, 0, 0, 0, 0, 60, OK",
    })
    void validates(String features, int flags, int gsoType, int gsoSize, int csumStart, int csumOffset, long len,
                   String expected) {
        long f = features.equals("ALL") ? ALL : bit(F_VERSION_1);
        TxValidator v = new TxValidator(f, 1500);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(VirtioNetHdr.SIZE);
            VirtioNetHdr.flags(h, 0, flags);
            VirtioNetHdr.gsoType(h, 0, gsoType);
            VirtioNetHdr.gsoSize(h, 0, gsoSize);
            VirtioNetHdr.csumStart(h, 0, csumStart);
            VirtioNetHdr.csumOffset(h, 0, csumOffset);
            DropReason r = v.check(h, 0, len);
            assertEquals(expected, r == null ? "OK" : r.name());
        }
    }

    @ParameterizedTest
    @CsvSource({"54, 54, OK", "54, 53, TX_BAD_GSO", "0, 14, OK"})
    void hdrLenMustNotExceedFrame(int hdrLen, long frameLen, String expected) {
        TxValidator v = new TxValidator(ALL, 1500);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(VirtioNetHdr.SIZE);
            VirtioNetHdr.hdrLen(h, 0, hdrLen);
            DropReason r = v.check(h, 0, frameLen);
            assertEquals(expected, r == null ? "OK" : r.name());
        }
    }

    @ParameterizedTest
    @CsvSource({"1, TX_BAD_GSO", "0, OK"})
    void ecnNeedsHostEcn(int ecnBit, String expected) {
        long f = bit(NET_F_CSUM) | bit(NET_F_HOST_TSO4);
        TxValidator v = new TxValidator(f, 1500);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(VirtioNetHdr.SIZE);
            VirtioNetHdr.gsoType(h, 0, VirtioNetHdr.GSO_TCPV4 | (ecnBit == 1 ? VirtioNetHdr.GSO_ECN : 0));
            VirtioNetHdr.gsoSize(h, 0, 1448);
            DropReason r = v.check(h, 0, 3000);
            assertEquals(expected, r == null ? "OK" : r.name());
        }
    }

    /**
     * UDP segmentation (gso_type 5): every case the kernel would refuse with EINVAL (checked by
     * writing such frames to a tap on 6.18) is dropped under a counted reason instead, plus segments
     * beyond the MTU. Frames: IPv4 (csum_start 34) or IPv6 (54) behind Ethernet, MTU 1500.
     */
    @ParameterizedTest(name = "features={0} flags={1} gso={2}/{3} csum={4}+{5} len={6} -> {7}")
    @CsvSource({
            // 64 KiB IPv4 / IPv6 frames, gso_size 1200..1472 (IPv4) / ..1452 (IPv6), last segment short
            "USO, 1, 5, 1472, 34, 6, 65549, OK",
            "USO, 1, 5, 1200, 34, 6, 65549, OK",
            "USO, 1, 5, 1452, 54, 6, 65550, OK",
            "USO, 1, 5, 1200, 54, 6, 60000, OK",
            // a frame no longer than one segment is not segmented, still valid
            "USO, 1, 5, 1472, 34, 6, 300, OK",
            // not negotiated (HOST_USO off; TSO/UFO do not stand in for it)
            "TSO, 1, 5, 1472, 34, 6, 65549, TX_BAD_GSO",
            "NONE, 1, 5, 1472, 34, 6, 65549, TX_BAD_GSO",
            // gso_size 0, ECN bit (refused even with HOST_ECN), too long
            "USO, 1, 5, 0, 34, 6, 65549, TX_BAD_GSO",
            "USO, 1, 133, 1472, 34, 6, 65549, TX_BAD_GSO",
            "USO, 1, 5, 1472, 34, 6, 65551, TX_TOO_LONG",
            // segments beyond the MTU: 34 + 8 + 1477 = 1519 > 1518; IPv6 with 1472 is 1534
            "USO, 1, 5, 1476, 34, 6, 65549, OK",
            "USO, 1, 5, 1477, 34, 6, 65549, TX_BAD_GSO",
            "USO, 1, 5, 1472, 54, 6, 65550, TX_BAD_GSO",
            "USO, 1, 5, 9000, 34, 6, 60000, TX_BAD_GSO",
            // more than 128 segments: 128 * 500 payload bytes fit, one more byte does not
            "USO, 1, 5, 500, 34, 6, 64042, OK",
            "USO, 1, 5, 500, 34, 6, 64043, TX_BAD_GSO",
            "USO, 1, 5, 1, 34, 6, 170, OK",
            "USO, 1, 5, 1, 34, 6, 171, TX_BAD_GSO",
            // no partial checksum, checksum not in the UDP header, or without CSUM
            "USO, 0, 5, 1472, 34, 6, 65549, TX_BAD_CSUM",
            "USO, 2, 5, 1472, 34, 6, 65549, TX_BAD_CSUM",
            "USO, 1, 5, 1472, 34, 16, 65549, TX_BAD_CSUM",
            "USO, 1, 5, 1472, 34, 0, 65549, TX_BAD_CSUM",
            "USO-NOCSUM, 1, 5, 1472, 34, 6, 65549, TX_BAD_CSUM",
            // UDP header before any IP header could end, or not inside the frame
            "USO, 1, 5, 1472, 14, 6, 65549, TX_BAD_CSUM",
            "USO, 1, 5, 1472, 33, 6, 65549, TX_BAD_CSUM",
            "USO, 1, 5, 1472, 65545, 6, 65549, TX_BAD_CSUM",
            "USO, 1, 5, 500, 1000, 6, 1007, TX_BAD_CSUM",
            "USO, 1, 5, 500, 1000, 6, 1008, OK",
    })
    void validatesUdpSegmentation(String features, int flags, int gsoType, int gsoSize, int csumStart, int csumOffset,
                                  long len, String expected) {
        long f = switch (features) {
            case "USO" -> ALL;
            case "USO-NOCSUM" -> ALL & ~bit(NET_F_CSUM);
            case "TSO" -> ALL & ~bit(NET_F_HOST_USO);
            default -> bit(F_VERSION_1) | bit(NET_F_CSUM);
        };
        TxValidator v = new TxValidator(f, 1500);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(VirtioNetHdr.SIZE);
            VirtioNetHdr.flags(h, 0, flags);
            VirtioNetHdr.gsoType(h, 0, gsoType);
            VirtioNetHdr.hdrLen(h, 0, Math.min(csumStart + 8, (int) len));
            VirtioNetHdr.gsoSize(h, 0, gsoSize);
            VirtioNetHdr.csumStart(h, 0, csumStart);
            VirtioNetHdr.csumOffset(h, 0, csumOffset);
            DropReason r = v.check(h, 0, len);
            assertEquals(expected, r == null ? "OK" : r.name());
        }
    }
}
