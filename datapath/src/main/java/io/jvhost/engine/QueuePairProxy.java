package io.jvhost.engine;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryFault;
import io.jvhost.net.PacketCapture;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.virtq.RingSetup;
import io.jvhost.virtq.RingState;
import io.jvhost.virtq.VirtqError;

import java.util.concurrent.Callable;

/**
 * The control side's handle on one {@link QueuePair}: one named method per command (Aeron's
 * {@code SenderProxy} is the shape). While the pair is on a {@link Worker} each command is queued to
 * it, run on that thread ({@code QueuePair.on…}) and acknowledged; the method returns only then,
 * with the command's result or its exception. While it is on no worker (before {@link #attach}, after
 * {@link #detach}) nothing else touches the pair and commands run on the calling thread. A command
 * that faults on guest memory marks the pair broken ({@link VirtqError#MEMORY_FAULT}) before the
 * exception reaches the caller.
 *
 * <p>A pair joins a worker of its {@link WorkerPool} with {@link #attach} (the device does it when
 * the front-end starts the pair's first ring) and leaves it with {@link #detach} (at the session's
 * end): both are commands to that worker, which meanwhile keeps serving its other pairs.
 *
 * <p>Threading: any thread but a worker's; calls from several threads are serialised by the worker
 * (or, detached, by the pair's monitor). {@link #attach} / {@link #detach} from one control thread at a
 * time. Statistics ({@link #counters()}, {@link #latency()}, {@link #brokenReason}) are read directly,
 * without a command.
 */
public final class QueuePairProxy {
    private final QueuePair pair;
    private final String device;
    /** Where the pair may run; null for a pair fixed to one worker. */
    private final WorkerPool pool;
    /** The worker running the pair, or null while it runs on none. */
    private volatile Worker worker;

    /** Hands {@code pair} to {@code worker} for good: from now on only the worker touches it. */
    public QueuePairProxy(Worker worker, QueuePair pair) {
        this.pool = null;
        this.device = null;
        this.pair = pair;
        worker.call(() -> {
            worker.onAdd(pair);
            return null;
        });
        this.worker = worker;
    }

    /**
     * A pair of device {@code device} that runs on a worker of {@code pool} once {@link #attach}ed;
     * until then on no worker.
     */
    public QueuePairProxy(WorkerPool pool, String device, QueuePair pair) {
        this.pool = pool;
        this.device = device;
        this.pair = pair;
    }

    /**
     * A pair with a worker of its own (not started: {@link #start}); {@link #close} ends both. Until
     * the worker starts, commands run on the calling thread.
     */
    public static QueuePairProxy withOwnWorker(String device, int index, int tapFd, WorkerConfig config, int ringSize) {
        Worker w = new Worker(device + "-q" + index, config);
        try {
            return new QueuePairProxy(w, new QueuePair(device, index, tapFd, config.weight(), ringSize));
        } catch (RuntimeException | Error e) {
            w.close();
            throw e;
        }
    }

    /** Starts the pair's worker (a pair made by {@link #withOwnWorker}). */
    public void start() {
        worker.start();
    }

    /** Ends the pair's worker, resetting its rings (a pair made by {@link #withOwnWorker}). */
    public void close() {
        Worker w = worker;
        if (w != null) {
            w.close();
        }
    }

    public String name() {
        return pair.name();
    }

    public int queuePair() {
        return pair.index();
    }

    /** The worker running the pair now, or null. */
    public Worker worker() {
        return worker;
    }

    /** Whether the pair is on a worker. */
    public boolean attached() {
        return worker != null;
    }

    /**
     * Joins a worker of the pool (the one the pool assigns: by hand, else the least loaded): its fds
     * enter that worker's epoll set and the worker starts giving it a share of every cycle. No-op
     * while on a worker.
     */
    public void attach() {
        if (worker != null || pool == null) {
            return;
        }
        Worker w = pool.assign(device, pair.index());
        try {
            w.call(() -> {
                w.onAdd(pair);
                return null;
            });
        } catch (RuntimeException | Error e) {
            pool.release(w);
            throw e;
        }
        worker = w;
    }

    /**
     * Leaves the worker: its fds leave the epoll set and from now on commands run on the caller. The
     * rings keep their state (reset them first to stop them). No-op while on no worker or for a pair
     * fixed to one worker.
     */
    public void detach() {
        Worker w = worker;
        if (w == null || pool == null) {
            return;
        }
        w.call(() -> {
            w.onRemove(pair);
            return null;
        });
        worker = null;
        pool.release(w);
    }

    /** The pair itself, for tests in this package: touch it only through {@link Worker#call}. */
    QueuePair pair() {
        return pair;
    }

    private <T> T call(Callable<T> task) {
        Callable<T> guarded = () -> {
            try {
                T r = task.call();
                Worker.deliverPendingFault();
                return r;
            } catch (RuntimeException | Error e) {
                if (MemoryFault.is(e)) {
                    // A command that touched a ring (start, stop, TX flush) found the memory gone; the
                    // fault may also be the JVM's asynchronous report of an access the cycle made.
                    pair.onMemoryFault(e);
                }
                throw e;
            }
        };
        Worker w = worker;
        if (w != null) {
            return w.call(guarded);
        }
        synchronized (pair) {
            try {
                return guarded.call();
            } catch (RuntimeException e) {
                throw e;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
    }

    /** The worker whose settings a per-worker command changes: the current one, else the one placement fixes. */
    private Worker settingsWorker() {
        Worker w = worker;
        if (w == null && pool != null) {
            w = pool.placed(device, pair.index());
        }
        if (w == null) {
            throw new IllegalStateException(pair.name() + " is on no worker yet");
        }
        return w;
    }

    /** Starts ring {@code role} ({@link QueuePair#RX} / {@link QueuePair#TX}) on the current memory table. */
    public void startRing(int role, RingSetup setup) {
        call(() -> {
            pair.onStartRing(role, setup);
            return null;
        });
    }

    /** Stops ring {@code role}; returns the base the next start must use. */
    public int stopRing(int role) {
        return call(() -> pair.onStopRing(role));
    }

    public boolean ringStarted(int role) {
        return call(() -> pair.ringStarted(role));
    }

    /** Enables or disables ring {@code role} (a disabled TX ring discards, a disabled RX ring supplies nothing). */
    public void setRingEnabled(int role, boolean on) {
        call(() -> {
            pair.onSetRingEnabled(role, on);
            return null;
        });
    }

    /** A new call eventfd for ring {@code role} (-1: none). */
    public void setCallFd(int role, int fd) {
        call(() -> {
            pair.onSetCallFd(role, fd);
            return null;
        });
    }

    /** A new error eventfd for ring {@code role} (-1: none). */
    public void setErrFd(int role, int fd) {
        call(() -> {
            pair.onSetErrFd(role, fd);
            return null;
        });
    }

    /**
     * Switches the pair to a new memory table; when this returns the worker no longer uses the old one.
     *
     * @return false when a running ring is not inside the new table (that ring is then broken)
     */
    public boolean setMemory(GuestMemory table) {
        return call(() -> pair.onSetMemory(table));
    }

    /** New negotiated features and MTU: header size, validation and RX geometry. */
    public void setFeatures(long features, int mtu) {
        call(() -> {
            pair.onSetFeatures(features, mtu);
            return null;
        });
    }

    /**
     * Dirty logging for live migration ({@code logAll} with a log: log every write; {@code logAll}
     * without one: hold the rings until a log comes; else off). When this returns the worker no
     * longer uses the previous log, which may then be unmapped.
     */
    public void setDirtyLog(DirtyLog log, boolean logAll) {
        call(() -> {
            pair.onSetDirtyLog(log, logAll);
            return null;
        });
    }

    /** Whether the pair's rings wait for a dirty log (tests). */
    public boolean logHeld() {
        return call(pair::logHeld);
    }

    public void setCapture(PacketCapture capture) {
        call(() -> {
            pair.onSetCapture(capture);
            return null;
        });
    }

    /** Stops both rings and clears broken state (device reset, session end). */
    public void reset() {
        call(() -> {
            pair.onReset();
            return null;
        });
    }

    /**
     * How long the worker polls before sleeping (0: sleep at once); applies to the whole worker (the
     * pair's, or the one its placement names).
     */
    public void setBusyPollNanos(long nanos) {
        Worker w = settingsWorker();
        w.call(() -> {
            w.onSetBusyPollNanos(nanos);
            return null;
        });
    }

    /** The worker's adaptive spin (0: off); applies to the whole worker, as {@link #setBusyPollNanos}. */
    public void setAdaptiveSpinNanos(long nanos) {
        Worker w = settingsWorker();
        w.call(() -> {
            w.onSetAdaptiveSpinNanos(nanos);
            return null;
        });
    }

    /** Waits until the worker has run everything submitted before (a no-op command). */
    public void sync() {
        Worker w = worker;
        if (w != null) {
            w.call(() -> null);
        }
    }

    /** Frees the pair's native resources; it must be on no worker (after {@link #detach}). */
    public void free() {
        if (worker != null && pool != null) {
            throw new IllegalStateException(pair.name() + " is still on " + worker.name());
        }
        synchronized (pair) {
            pair.close();
        }
    }

    public QueueCounters counters() {
        return pair.counters();
    }

    public QueueLatency latency() {
        return pair.latency();
    }

    /** The state of ring {@code role} (stopped, disabled, enabled, broken). Any thread; never wakes the worker. */
    public RingState ringState(int role) {
        return pair.ringState(role);
    }

    /** Why ring {@code role} is broken, or null. Any thread. */
    public VirtqError brokenReason(int role) {
        return pair.brokenReason(role);
    }

    /** The detail logged when ring {@code role} broke, or null. Any thread. */
    public String brokenMessage(int role) {
        return pair.brokenMessage(role);
    }

    public boolean usesUring() {
        return pair.usesUring();
    }

    public String diagnostics() {
        Worker w = worker;
        return w != null ? w.diagnostics() : pair.name() + ": on no worker";
    }
}
