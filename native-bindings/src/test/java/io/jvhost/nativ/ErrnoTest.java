package io.jvhost.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.nativ.gen.Linux;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Map;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class ErrnoTest {

    @Test
    void namesFollowTheLinuxTable() {
        assertEquals("EPERM", Errno.name(1));
        assertEquals("EAGAIN", Errno.name(Errno.EAGAIN));
        assertEquals("EBUSY", Errno.name(16));
        assertEquals("ENOTSOCK", Errno.name(88));
        assertEquals("ECONNREFUSED", Errno.name(111));
        assertEquals("EHWPOISON", Errno.name(133));
        assertEquals("errno 41", Errno.name(41));
        assertEquals("errno 999", Errno.name(999));
        assertEquals("errno 0", Errno.name(0));
    }

    @Test
    void constantsMatchTheGeneratedBindings() throws Exception {
        int checked = 0;
        for (Field f : Errno.class.getDeclaredFields()) {
            if (Modifier.isPublic(f.getModifiers()) && f.getType() == int.class) {
                int generated = (int) Linux.class.getMethod(f.getName()).invoke(null);
                assertEquals(generated, f.getInt(null), f.getName());
                checked++;
            }
        }
        assertTrue(checked > 20, "checked " + checked);
    }

    @Test
    void nameTableCoversEveryGeneratedErrno() throws Exception {
        Map<String, String> aliases = Map.of("EWOULDBLOCK", "EAGAIN", "EDEADLOCK", "EDEADLK", "ENOTSUP", "EOPNOTSUPP");
        Pattern errnoName = Pattern.compile("E[A-Z0-9]+");
        int checked = 0;
        for (Method m : Linux.class.getDeclaredMethods()) {
            String n = m.getName();
            if (Modifier.isPublic(m.getModifiers()) && m.getParameterCount() == 0 && m.getReturnType() == int.class
                    && errnoName.matcher(n).matches() && !n.startsWith("EPOLL")) {
                int value = (int) m.invoke(null);
                assertEquals(aliases.getOrDefault(n, n), Errno.name(value), n + " = " + value);
                checked++;
            }
        }
        assertTrue(checked >= 130, "checked " + checked);
    }

    @Test
    void textsComeFromLibcAndAreCached() {
        assertEquals("No such file or directory", Errno.text(Errno.ENOENT));
        assertEquals("Operation not permitted", Errno.text(Errno.EPERM));
        assertSame(Errno.text(Errno.EBUSY), Errno.text(Errno.EBUSY), "cached per errno");
        assertTrue(Errno.text(4000).contains("4000"), Errno.text(4000));
    }

    @Test
    void wouldBlockIsMinusEagain() {
        assertEquals(-11, Fds.WOULD_BLOCK);
    }

    @Test
    void messageNamesCallContextSymbolAndText() {
        NativeException e = NativeException.of("ioctl TUNSETIFF", "tap7", Errno.EPERM, "a hint");
        assertEquals("ioctl TUNSETIFF(tap7): EPERM: Operation not permitted — a hint", e.getMessage());
        assertEquals(Errno.EPERM, e.errno());
        assertEquals("ioctl TUNSETIFF", e.call());
        assertTrue(e.getStackTrace().length > 0);

        NativeException fast = NativeException.fast("writev", 42, Errno.EIO);
        assertEquals("writev(fd 42): EIO: Input/output error", fast.getMessage());
        assertEquals(0, fast.getStackTrace().length, "hot-path exceptions skip the stack trace");

        assertEquals("pipe2: EMFILE: Too many open files", NativeException.of("pipe2", null, Errno.EMFILE).getMessage());
    }

    @Test
    void tapHints() {
        assertEquals(Tun.HINT_NO_DEVICE, Tun.openHint(Errno.ENOENT));
        assertEquals(Tun.HINT_NO_DEVICE, Tun.openHint(Errno.ENODEV));
        String noCap = Tun.setIffHint(Errno.EPERM, "vh0", Tun.IFF_TAP | Tun.IFF_MULTI_QUEUE, false, "alice");
        assertEquals("run as root or give CAP_NET_ADMIN, or pre-create a persistent tap owned by your user: "
                + "ip tuntap add dev vh0 mode tap user alice vnet_hdr multi_queue", noCap);
        String owned = Tun.setIffHint(Errno.EPERM, "vh0", Tun.IFF_TAP, true, "alice");
        assertEquals("tap vh0 exists and belongs to another user or is in use: choose another --tap name "
                + "or fix its owner with `ip tuntap`", owned);
        assertEquals(owned, Tun.setIffHint(Errno.EBUSY, "vh0", Tun.IFF_TAP, true, "alice"));
        assertTrue(Tun.setIffHint(Errno.EINVAL, "eth0", Tun.IFF_TAP, true, "alice").contains("not a tap"));
    }
}
