package io.jvhost.it;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The parsing half of {@link QemuGuest}, which needs no QEMU. */
class QemuGuestMarkerTest {
    @Test
    void featureBitStringIsBitZeroFirst() {
        // What a guest on DPDK's vhost back-end printed: CSUM, GUEST_CSUM, ..., VERSION_1 (bit 32).
        long f = QemuGuest.parseFeatureBits("1110010111100111111101010000110010000000000000000000000000000000");
        assertEquals(1L, f & 1);
        assertEquals(1L << 32, f & (1L << 32));
        assertEquals(0L, f & (1L << 33));
        assertEquals(1L << 63, QemuGuest.parseFeatureBits("0".repeat(63) + "1"));
        assertThrows(IllegalArgumentException.class, () -> QemuGuest.parseFeatureBits("10x"));
    }

    @Test
    void markerFields() {
        QemuGuest.Marker m = new QemuGuest.Marker("TX-MD5", "0127229a6e6acc97eb3299cf00a89bc0 bytes=4194304", 3);
        assertEquals("0127229a6e6acc97eb3299cf00a89bc0", m.first());
        assertEquals(4194304, m.intField("bytes"));
        assertNull(m.field("rc"));
        assertThrows(AssertionError.class, () -> m.intField("rc"));
        assertEquals("0", new QemuGuest.Marker("DONE", "rc=0", 9).field("rc"));
    }
}
