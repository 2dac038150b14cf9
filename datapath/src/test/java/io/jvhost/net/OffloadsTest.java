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

    /** A fake TUNSETOFFLOAD that refuses (EINVAL) every flag set containing one of {@code refused}. */
    private static Ioctl refusing(int refused, java.util.List<Integer> calls) {
        return flags -> {
            calls.add(flags);
            return (flags & refused) != 0 ? io.jvhost.nativ.Errno.EINVAL : 0;
        };
    }

    @Test
    void appliesWhatTheKernelTakes() {
        java.util.List<Integer> calls = new java.util.ArrayList<>();
        int all = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO;
        assertEquals(all, apply(all, refusing(0, calls)));
        assertEquals(java.util.List.of(all), calls);
    }

    @Test
    void fallsBackWithoutUsoWhereTheKernelRefusesIt() {
        // A kernel before 6.2 refuses both USO flags; 6.18 still refuses either one alone.
        java.util.List<Integer> calls = new java.util.ArrayList<>();
        int wanted = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO;
        assertEquals(TUN_F_CSUM | TUN_F_TSO4, apply(wanted, refusing(TUN_F_USO, calls)));
        assertEquals(java.util.List.of(wanted, TUN_F_CSUM | TUN_F_TSO4), calls);
        assertEquals(TUN_F_CSUM, apply(TUN_F_CSUM | TUN_F_USO4, refusing(TUN_F_USO, new java.util.ArrayList<>())));
    }

    @Test
    void aRefusalWithoutUsoIsAnError() {
        java.util.List<Integer> calls = new java.util.ArrayList<>();
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> apply(TUN_F_CSUM | TUN_F_UFO, refusing(TUN_F_UFO, calls)));
        assertEquals(java.util.List.of(TUN_F_CSUM | TUN_F_UFO), calls, "no retry when there is no USO to drop");
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> apply(TUN_F_CSUM | TUN_F_USO, refusing(TUN_F_CSUM, new java.util.ArrayList<>())));
    }

    @Test
    void describesUso() {
        assertEquals("csum,uso4,uso6", describe(TUN_F_CSUM | TUN_F_USO));
        assertEquals(TUN_F_CSUM | TUN_F_USO4, tunFlags(f(NET_F_GUEST_CSUM, NET_F_GUEST_USO4)));
    }
}
