package io.jvhost.engine;

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
 * {@code SenderProxy} is the shape). Each command is queued to the pair's {@link Worker}, run on
 * that thread ({@code QueuePair.on…}) and acknowledged; the method returns only then, with the
 * command's result or its exception. A command that faults on guest memory marks the pair broken
 * ({@link VirtqError#MEMORY_FAULT}) before the exception reaches the caller.
 *
 * <p>Threading: any thread but the worker's; calls from several threads are serialised by the
 * worker. Statistics ({@link #counters()}, {@link #latency()}, {@link #brokenReason}) are read
 * directly, without a command.
 */
public final class QueuePairProxy {
    private final Worker worker;
    private final QueuePair pair;

    /** Hands {@code pair} to {@code worker}: from now on only the worker touches it. */
    public QueuePairProxy(Worker worker, QueuePair pair) {
        this.worker = worker;
        this.pair = pair;
        worker.call(() -> {
            worker.onAdd(pair);
            return null;
        });
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
        worker.close();
    }

    public String name() {
        return pair.name();
    }

    public int queuePair() {
        return pair.index();
    }

    public Worker worker() {
        return worker;
    }

    /** The pair itself, for tests in this package: touch it only through {@link Worker#call}. */
    QueuePair pair() {
        return pair;
    }

    private <T> T call(Callable<T> task) {
        return worker.call(() -> {
            try {
                return task.call();
            } catch (RuntimeException | Error e) {
                if (MemoryFault.is(e)) {
                    // A command that touched a ring (start, stop, TX flush) found the memory gone; the
                    // fault may also be the JVM's asynchronous report of an access the cycle made.
                    pair.onMemoryFault(e);
                }
                throw e;
            }
        });
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

    /** How long the worker polls before sleeping (0: sleep at once); applies to the whole worker. */
    public void setBusyPollNanos(long nanos) {
        worker.call(() -> {
            worker.onSetBusyPollNanos(nanos);
            return null;
        });
    }

    /** The worker's adaptive spin (0: off); applies to the whole worker. */
    public void setAdaptiveSpinNanos(long nanos) {
        worker.call(() -> {
            worker.onSetAdaptiveSpinNanos(nanos);
            return null;
        });
    }

    /** Waits until the worker has run everything submitted before (a no-op command). */
    public void sync() {
        worker.call(() -> null);
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
        return worker.diagnostics();
    }
}
