package io.jvhost.net;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;

import static io.jvhost.net.Offloads.*;
import static io.jvhost.virtio.VirtioFeatures.*;
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
        assertEquals(0, tunFlags(f(NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_UFO, NET_F_GUEST_ECN)));
    }

    @Test
    void translatesEachOffload() {
        assertEquals(TUN_F_CSUM, tunFlags(f(NET_F_GUEST_CSUM)));
        assertEquals(TUN_F_CSUM | TUN_F_TSO4, tunFlags(f(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4)));
        assertEquals(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO,
                tunFlags(f(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_ECN, NET_F_GUEST_UFO)));
        assertEquals(TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6, tunFlags(f(NET_F_GUEST_CSUM, NET_F_GUEST_USO4, NET_F_GUEST_USO6)));
    }

    @Test
    void ecnNeedsTso() {
        assertEquals(TUN_F_CSUM, tunFlags(f(NET_F_GUEST_CSUM, NET_F_GUEST_ECN)));
    }

    @Test
    void hostBitsDoNotMatter() {
        assertEquals(TUN_F_CSUM, tunFlags(f(NET_F_GUEST_CSUM, NET_F_CSUM, NET_F_HOST_TSO4, NET_F_HOST_TSO6, NET_F_HOST_UFO, NET_F_MRG_RXBUF, F_VERSION_1)));
    }

    @Test
    void describes() {
        assertEquals("none", describe(0));
        assertEquals("csum,tso4,tso_ecn", describe(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN));
    }
}
