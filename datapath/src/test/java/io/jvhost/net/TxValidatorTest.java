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
}
