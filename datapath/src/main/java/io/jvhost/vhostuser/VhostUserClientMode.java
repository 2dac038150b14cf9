package io.jvhost.vhostuser;

import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import java.lang.System.Logger.Level;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * Client mode ({@code --client}; QEMU {@code -chardev socket,path=...,server=on}): jvhost connects to
 * the front-end's socket and, whenever the connection cannot be made or goes away (QEMU restarted),
 * tries again with exponential back-off: {@value #BACKOFF_MIN_MS} ms doubling up to
 * {@value #BACKOFF_MAX_MS} ms, reset after every successful connection. Each connection is a fresh
 * {@link Session}; the device is reset between them.
 *
 * <p>Threading: one control thread named {@code jvhost-<device>-ctl} does everything, a virtual thread
 * that waits through the {@link FdPoller}; {@link #close()} may be called from any thread, wakes it
 * and returns once that thread has ended the session.
 */
public final class VhostUserClientMode implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VhostUserClientMode.class.getName());
    public static final long BACKOFF_MIN_MS = 100;
    public static final long BACKOFF_MAX_MS = 5_000;

    private final String name;
    private final String socketPath;
    private final DeviceBackend backend;
    private final FeatureSet features;
    private final Thread thread;
    private final FdPoller.Waiter waiter = new FdPoller.Waiter();
    private final AtomicLong connects = new AtomicLong();
    private final AtomicLong failedAttempts = new AtomicLong();
    private volatile boolean running = true;
    private volatile boolean active;

    private VhostUserClientMode(String name, String socketPath, DeviceBackend backend, FeatureSet features) {
        this.name = name;
        this.socketPath = socketPath;
        this.backend = backend;
        this.features = features;
        this.thread = Thread.ofVirtual().name("jvhost-" + name + "-ctl").unstarted(this::run);
    }

    /** Starts connecting to the front-end's socket at {@code socketPath}. */
    public static VhostUserClientMode connect(String name, String socketPath, DeviceBackend backend,
                                              FeatureSet features) {
        VhostUserClientMode c = new VhostUserClientMode(name, socketPath, backend, features);
        c.thread.start();
        return c;
    }

    private void run() {
        long backoff = BACKOFF_MIN_MS;
        boolean reportedDown = false;
        while (running) {
            int fd;
            try {
                fd = UnixSocket.connect(socketPath);
            } catch (NativeException e) {
                failedAttempts.incrementAndGet();
                // one line per outage, not one per attempt
                LOG.log(reportedDown ? Level.DEBUG : Level.INFO, "{0}: cannot connect to {1} ({2}); retrying with back-off",
                        name, socketPath, e.getMessage());
                reportedDown = true;
                sleep(backoff);
                backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
                continue;
            }
            reportedDown = false;
            backoff = BACKOFF_MIN_MS;
            connects.incrementAndGet();
            LOG.log(Level.INFO, "{0}: connected to {1}", name, socketPath);
            Session session = new Session(name, fd, backend, features);
            active = true;
            try {
                while (running) {
                    if (waiter.await(fd, Poll.POLLIN, -1) && running && !session.handleOne()) {
                        break;
                    }
                }
            } catch (RuntimeException | Error e) {
                LOG.log(Level.ERROR, name + ": session failed", e);
            } finally {
                try {
                    session.close();
                } catch (RuntimeException e) {
                    LOG.log(Level.ERROR, name + ": closing the session failed", e);
                }
                active = false;
            }
            if (running) {
                LOG.log(Level.INFO, "{0}: front-end went away; reconnecting", name);
                sleep(backoff);
                backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
            }
        }
    }

    private void sleep(long ms) {
        long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        long left;
        while (running && (left = end - System.nanoTime()) > 0) {
            LockSupport.parkNanos(left); // close() unparks
        }
    }

    public String name() {
        return name;
    }

    /** Whether a front-end is connected now. */
    public boolean sessionActive() {
        return active;
    }

    /** Successful connections so far. */
    public long connects() {
        return connects.get();
    }

    /** Connection attempts that failed so far. */
    public long failedAttempts() {
        return failedAttempts.get();
    }

    /** Stops reconnecting, ends the current session (device reset). Idempotent. */
    @Override
    public void close() {
        running = false;
        waiter.wake();
        LockSupport.unpark(thread);
        if (Thread.currentThread() != thread) {
            try {
                thread.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
