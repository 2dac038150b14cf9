package io.jvhost.cli;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** sd_listen_fds(3)'s rules: fds from 3, only for the process LISTEN_PID names. (The IT runs the real thing.) */
class SystemdTest {
    @Test
    void listenFdsAreOursOnlyWhenThePidMatches() {
        assertArrayEquals(new int[] {3}, Systemd.listenFds(Map.of("LISTEN_FDS", "1", "LISTEN_PID", "42"), 42));
        assertArrayEquals(new int[] {3, 4, 5}, Systemd.listenFds(Map.of("LISTEN_FDS", "3", "LISTEN_PID", "42"), 42));
        // Inherited from a socket-activated parent: meant for the parent, not us.
        assertEquals(0, Systemd.listenFds(Map.of("LISTEN_FDS", "1", "LISTEN_PID", "41"), 42).length);
        assertEquals(0, Systemd.listenFds(Map.of(), 42).length);
        assertThrows(IllegalArgumentException.class, () -> Systemd.listenFds(Map.of("LISTEN_FDS", "x", "LISTEN_PID", "42"), 42));
        assertThrows(IllegalArgumentException.class, () -> Systemd.listenFds(Map.of("LISTEN_FDS", "-1", "LISTEN_PID", "42"), 42));
    }
}
