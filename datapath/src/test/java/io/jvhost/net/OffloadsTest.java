package io.jvhost.net;

import org.junit.jupiter.api.Test;

import static io.jvhost.net.Offloads.*;
import static io.jvhost.net.VirtioNetFeatures.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

class OffloadsTest {
    private static long f(int... bits) {
        long v = 0;
        for (int b : bits) {
            v |= bit(b);
        }
        return v;
    }

    @Test
    void nothingWithoutGuestCsum() {
        assertEquals(0, tunFlags(0));
        assertEquals(0, tunFlags(f(GUEST_TSO4, GUEST_TSO6, GUEST_UFO, GUEST_ECN)));
    }

    @Test
    void translatesEachOffload() {
        assertEquals(TUN_F_CSUM, tunFlags(f(GUEST_CSUM)));
        assertEquals(TUN_F_CSUM | TUN_F_TSO4, tunFlags(f(GUEST_CSUM, GUEST_TSO4)));
        assertEquals(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO,
                tunFlags(f(GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO)));
        assertEquals(TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6, tunFlags(f(GUEST_CSUM, GUEST_USO4, GUEST_USO6)));
    }

    @Test
    void ecnNeedsTso() {
        assertEquals(TUN_F_CSUM, tunFlags(f(GUEST_CSUM, GUEST_ECN)));
    }

    @Test
    void hostBitsDoNotMatter() {
        assertEquals(TUN_F_CSUM, tunFlags(f(GUEST_CSUM, CSUM, HOST_TSO4, HOST_TSO6, HOST_UFO, MRG_RXBUF, VERSION_1)));
    }

    @Test
    void describes() {
        assertEquals("none", describe(0));
        assertEquals("csum,tso4,tso_ecn", describe(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN));
    }
}
