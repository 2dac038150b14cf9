package io.jvhost.vhostuser;

import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.Errno;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Server mode (the default, QEMU {@code -chardev socket,path=...} without {@code server=on}): listens
 * on a unix socket ({@code --socket-path}) or uses an inherited fd ({@code --fd}) and serves one
 * front-end at a time. While a session is active a further connection is accepted and closed at once
 * with a log line (a vhost-user device has one owner); after a disconnect the device is reset and the
 * next connection gets a fresh session.
 *
 * <p>An inherited fd may be a listening socket or an already connected one (both conventions exist);
 * a connected one serves a single session and the server ends with it.
 *
 * <p>Threading: everything runs on one control thread named {@code jvhost-<device>-ctl}, a virtual
 * thread that waits through the {@link FdPoller} (so a process serving many devices holds no OS thread
 * per device, and an idle one never wakes up); the {@link DeviceBackend} is only called from it.
 * {@link #close()} may be called from any thread: it wakes the thread, which ends the session
 * (resetting the device) and removes the socket file it created.
 */
public final class VhostUserServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VhostUserServer.class.getName());
    private static final long LISTEN_TOKEN = 1;
    private static final long SESSION_TOKEN = 2;
    private static final int BACKLOG = 4;
    /** Messages handled at most when checking whether the owner is already gone. */
    private static final int DRAIN_LIMIT = 64;

    private final String name;
    private final String socketPath;
    private final int listenFd;
    private final DeviceBackend backend;
    private final FeatureSet features;
    private final Thread thread;
    private final FdPoller.Waiter waiter = new FdPoller.Waiter();
    private final AtomicLong accepted = new AtomicLong();
    private final AtomicLong refused = new AtomicLong();
    private final AtomicLong ended = new AtomicLong();
    private volatile boolean running = true;
    private volatile boolean active;
    /** The inherited fd turned out to be a connected socket: serve it once, then stop. */
    private boolean singleConnection;
    private Session session;

    private VhostUserServer(String name, String socketPath, int listenFd, DeviceBackend backend, FeatureSet features) {
        this.name = name;
        this.socketPath = socketPath;
        this.listenFd = listenFd;
        this.backend = backend;
        this.features = features;
        this.thread = Thread.ofVirtual().name("jvhost-" + name + "-ctl").unstarted(this::run);
    }

    /** Creates the socket at {@code socketPath} (replacing a stale one) and starts serving. */
    public static VhostUserServer listen(String name, String socketPath, DeviceBackend backend, FeatureSet features) {
        int fd = UnixSocket.listen(socketPath, BACKLOG);
        VhostUserServer s = new VhostUserServer(name, socketPath, fd, backend, features);
        Fds.setNonBlocking(fd, true);
        s.thread.start();
        LOG.log(Level.INFO, "{0}: listening on {1}", name, socketPath);
        return s;
    }

    /** Serves on an inherited socket fd ({@code --fd=N}): a listening socket, or one connected front-end. */
    public static VhostUserServer inherit(String name, int fd, DeviceBackend backend, FeatureSet features) {
        VhostUserServer s = new VhostUserServer(name, null, fd, backend, features);
        Fds.setNonBlocking(fd, true);
        try {
            int c = UnixSocket.accept(fd);
            if (c >= 0) {
                s.adopt(c);
            }
        } catch (NativeException e) {
            if (e.errno() != Errno.EINVAL) {
                throw e;
            }
            // not a listening socket: it is the connection itself
            Fds.setNonBlocking(fd, false);
            s.singleConnection = true;
        }
        s.thread.start();
        LOG.log(Level.INFO, "{0}: serving inherited fd {1}{2}", name, fd, s.singleConnection ? " (connected)" : "");
        if (s.session != null) {
            // Socket activation: the connection that made systemd start us was already waiting.
            LOG.log(Level.INFO, "{0}: front-end connected", name);
        }
        return s;
    }

    private void adopt(int fd) {
        session = new Session(name, fd, backend, features);
        active = true;
        accepted.incrementAndGet();
    }

    private void run() {
        int ep = -1;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment events = Epoll.allocateEvents(arena, 4);
            ep = Epoll.create();
            if (singleConnection) {
                adopt(listenFd);
                Epoll.add(ep, listenFd, Epoll.EPOLLIN, SESSION_TOKEN);
            } else {
                Epoll.add(ep, listenFd, Epoll.EPOLLIN, LISTEN_TOKEN);
                if (session != null) {
                    Epoll.add(ep, session.socketFd(), Epoll.EPOLLIN, SESSION_TOKEN);
                }
            }
            while (running) {
                // The epoll fd is readable when one of its fds is: wait for it without a thread.
                waiter.await(ep, Poll.POLLIN, -1);
                int n = Epoll.wait(ep, events, 4, 0);
                for (int i = 0; i < n && running; i++) {
                    long token = Epoll.data(events, i);
                    if (token == LISTEN_TOKEN) {
                        acceptOne(ep);
                    } else if (token == SESSION_TOKEN && session != null && !session.handleOne()) {
                        endSession(ep);
                        if (singleConnection) {
                            running = false;
                        }
                    }
                }
            }
        } catch (RuntimeException | Error e) {
            LOG.log(Level.ERROR, name + ": control thread failed", e);
        } finally {
            endSession(ep);
            if (ep >= 0) {
                Fds.closeQuietly(ep);
            }
            if (!singleConnection) {
                Fds.closeQuietly(listenFd);
            }
            if (socketPath != null) {
                try {
                    Files.deleteIfExists(Path.of(socketPath));
                } catch (IOException e) {
                    LOG.log(Level.WARNING, "{0}: could not remove {1}: {2}; remove it by hand"
                            + " (a later start replaces a stale socket by itself)", name, socketPath, e.getMessage());
                }
            }
            running = false;
        }
    }

    private void acceptOne(int ep) {
        int fd;
        try {
            fd = UnixSocket.accept(listenFd);
        } catch (NativeException e) {
            LOG.log(Level.WARNING, "{0}: accept failed: {1}; still listening: if it repeats,"
                    + " check the process's open-file limit (ulimit -n, LimitNOFILE)", name, e.getMessage());
            return;
        }
        if (fd < 0) {
            return;
        }
        if (session != null) {
            // The owner may have hung up just before this connection came (a front-end reconnecting):
            // finish what it sent, up to its EOF, before deciding that the device is still owned.
            drainSession(ep);
        }
        if (session != null) {
            refused.incrementAndGet();
            LOG.log(Level.WARNING, "{0}: refusing a second front-end connection: the device already has an owner;"
                    + " give each VM its own socket (one jvhost device per vhost-user socket)",
                    name);
            Fds.closeQuietly(fd);
            return;
        }
        adopt(fd);
        try {
            Epoll.add(ep, fd, Epoll.EPOLLIN, SESSION_TOKEN);
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": cannot watch the new connection", e);
            endSession(ep);
            return;
        }
        LOG.log(Level.INFO, "{0}: front-end connected", name);
    }

    private void drainSession(int ep) {
        for (int i = 0; i < DRAIN_LIMIT && session != null; i++) {
            if (Poll.poll(session.socketFd(), Poll.POLLIN, 0) == 0) {
                return;
            }
            if (!session.handleOne()) {
                endSession(ep);
            }
        }
    }

    private void endSession(int ep) {
        Session s = session;
        if (s == null) {
            return;
        }
        session = null;
        if (ep >= 0) {
            try {
                Epoll.remove(ep, s.socketFd());
            } catch (RuntimeException e) {
                // fd already gone from the set: nothing to undo
            }
        }
        try {
            s.close();
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": closing the session failed", e);
        }
        active = false;
        ended.incrementAndGet();
    }

    public String name() {
        return name;
    }

    /** Whether a front-end is connected now. */
    public boolean sessionActive() {
        return active;
    }

    /** Connections accepted as sessions so far. */
    public long sessionsAccepted() {
        return accepted.get();
    }

    /** Sessions that have ended (peer gone, fatal error, close). */
    public long sessionsEnded() {
        return ended.get();
    }

    /** Connections refused because a session was active. */
    public long connectionsRefused() {
        return refused.get();
    }

    /** Whether the control thread still runs. */
    public boolean running() {
        return thread.isAlive();
    }

    /** Stops serving: ends the session (device reset), closes the socket, removes the socket file. Idempotent. */
    @Override
    public void close() {
        running = false;
        waiter.wake();
        if (Thread.currentThread() != thread) {
            try {
                thread.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (thread.isAlive()) {
                LOG.log(Level.WARNING, "{0}: control thread did not stop within 5 s (a front-end"
                        + " request hangs?); the process exits anyway", name);
            }
        }
    }
}
