package io.jvhost.cli;

import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.UnixSocket;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * The two systemd conventions jvhost follows, both plain environment/socket protocols (no libsystemd):
 * <ul>
 *   <li>Socket activation, sd_listen_fds(3): when {@code LISTEN_PID} is this process and
 *       {@code LISTEN_FDS} is N, fds 3 .. 3+N-1 are inherited listening sockets; jvhost serves each as
 *       it serves {@code --fd} (one device per fd, in order).</li>
 *   <li>Readiness, sd_notify(3): with {@code NOTIFY_SOCKET} set (a path, or {@code @name} in the
 *       abstract namespace), {@code READY=1} is sent as a datagram once every device listens
 *       ({@code Type=notify}), {@code STOPPING=1} when it begins to stop.</li>
 * </ul>
 * {@code systemd-socket-activate -l PATH jvhost ...} does the first without systemd.
 */
final class Systemd {
    /** SD_LISTEN_FDS_START. */
    static final int LISTEN_FDS_START = 3;

    private Systemd() {
    }

    /** The inherited listening fds meant for this process (empty when not socket-activated). */
    static int[] listenFds(Map<String, String> env, long pid) {
        String fds = env.get("LISTEN_FDS");
        String forPid = env.get("LISTEN_PID");
        if (fds == null || forPid == null) {
            return new int[0];
        }
        long p;
        int n;
        try {
            p = Long.parseLong(forPid.trim());
            n = Integer.parseInt(fds.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("LISTEN_PID=" + forPid + " / LISTEN_FDS=" + fds
                    + " are not numbers: fix the unit or the wrapper that sets them", e);
        }
        if (p != pid) {
            // Meant for another process (we inherited the environment of our parent): not ours.
            return new int[0];
        }
        if (n < 0 || n > 64) {
            throw new IllegalArgumentException("LISTEN_FDS=" + n + " out of range (1..64)");
        }
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = LISTEN_FDS_START + i;
        }
        return out;
    }

    static int[] listenFds() {
        return listenFds(System.getenv(), ProcessHandle.current().pid());
    }

    /**
     * Sends {@code state} (e.g. {@code "READY=1\nSTATUS=..."}) to {@code NOTIFY_SOCKET} if set.
     *
     * @return false when there is no notify socket or sending failed (logged by the caller)
     */
    static boolean notify(String state) {
        String socket = System.getenv("NOTIFY_SOCKET");
        if (socket == null || socket.isEmpty()) {
            return false;
        }
        int fd = UnixSocket.connectDatagram(socket);
        try (Arena a = Arena.ofConfined()) {
            byte[] b = state.getBytes(StandardCharsets.UTF_8);
            MemorySegment buf = a.allocate(b.length);
            MemorySegment.copy(b, 0, buf, ValueLayout.JAVA_BYTE, 0, b.length);
            return Fds.write(fd, buf, b.length) == b.length;
        } catch (NativeException e) {
            return false;
        } finally {
            Fds.closeQuietly(fd);
        }
    }
}
