package io.jvhost.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.jvhost.nativ.IoUring;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.parallel.ResourceLock;

@ResourceLock("jvhost.tap.io")
class TapIoTest {
    private final String saved = System.getProperty(TapIo.PROP_NAME);

    @AfterEach
    void restore() {
        if (saved == null) {
            System.clearProperty(TapIo.PROP_NAME);
        } else {
            System.setProperty(TapIo.PROP_NAME, saved);
        }
    }

    @Test
    void parsesTheProperty() {
        System.clearProperty(TapIo.PROP_NAME);
        assertEquals(TapIo.DEFAULT, TapIo.configured());
        System.setProperty(TapIo.PROP_NAME, "uring");
        assertEquals(TapIo.URING, TapIo.configured());
        System.setProperty(TapIo.PROP_NAME, " Syscalls ");
        assertEquals(TapIo.SYSCALLS, TapIo.configured());
        System.setProperty(TapIo.PROP_NAME, "aio");
        assertThrows(IllegalArgumentException.class, TapIo::configured);
    }

    @Test
    void effectiveFallsBackOnlyWhenUnavailable() {
        System.setProperty(TapIo.PROP_NAME, "uring");
        assertEquals(IoUring.unavailableReason() == null ? TapIo.URING : TapIo.SYSCALLS, TapIo.effective());
        System.setProperty(TapIo.PROP_NAME, "syscalls");
        assertEquals(TapIo.SYSCALLS, TapIo.effective());
    }
}
