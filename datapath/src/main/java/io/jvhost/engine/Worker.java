package io.jvhost.engine;

import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.stats.Counter;
import org.jctools.queues.varhandle.MpscVarHandleArrayQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A worker thread ({@code jvhost-<name>}): an agent with a duty cycle over the {@link QueuePair}s it
 * runs (Aeron's {@code Sender} / Agrona's {@code AgentRunner} are the shape).
 *
 * <h2>Duty cycle</h2>
 * Each cycle reads the clock once, drains control commands (bounded), and gives every pair one TX
 * and one RX batch bounded by the weight (so neither direction, nor one pair, starves the others;
 * each batch ends with one used publish and at most one call). A cycle that did work is followed by
 * another at once. An idle cycle asks the {@link SpinPolicy} whether to keep polling; if not, every
 * pair re-enables guest notifications and re-checks its rings (no lost wake-up), and the worker
 * sleeps in {@code epoll_wait} on the kick eventfds, the taps (only the directions that can make
 * progress) and its command eventfd. Rings without a kick fd are re-checked every millisecond.
 *
 * <h2>Control</h2>
 * Control threads never touch worker state: {@link QueuePairProxy} submits a command through a
 * JCTools MPSC queue plus an eventfd wake-up and returns only when the worker has run it — so a
 * stopped ring, a disabled ring or a swapped memory table is quiesced before the control thread
 * replies to the front-end (and before it unmaps an old table).
 *
 * <h2>Faults</h2>
 * A guest-memory fault in a pair's work ({@link MemoryFault}) breaks that pair's rings; any other
 * failure stops that pair's rings (logged). The worker keeps running for its other pairs.
 */
public final class Worker implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Worker.class.getName());

    private static final long TAG_CMD = 0;
    private static final int KIND_BITS = 2;
    private static final int MAX_EVENTS = 16;
    private static final int POLL_INTERVAL_MS = 1;
    private static final int COMMANDS_PER_CYCLE = 16;

    private final String name;
    private final long ackTimeoutMs;
    private final Arena arena = Arena.ofShared();
    private final MpscVarHandleArrayQueue<Command<?>> commands = new MpscVarHandleArrayQueue<>(64);
    private final int ep;
    private final int cmdFd;
    private final MemorySegment events;
    private final Thread thread;
    private final SpinPolicy spin;

    // ---- worker-owned state ----
    private final List<QueuePair> pairs = new ArrayList<>();
    private QueuePair[] active = new QueuePair[0];
    private boolean running = true;
    private volatile boolean alive;

    /**
     * @param name   thread name suffix ({@code jvhost-<name>})
     * @param config weight, busy-poll, adaptive spin, acknowledgement timeout
     */
    public Worker(String name, WorkerConfig config) {
        this.name = "jvhost-" + name;
        this.ackTimeoutMs = config.ackTimeoutMs();
        this.spin = new SpinPolicy(config.busyPollNanos(), config.adaptiveSpinNanos());
        this.ep = Epoll.create();
        this.cmdFd = EventFd.create(0, true);
        this.events = Epoll.allocateEvents(arena, MAX_EVENTS);
        Epoll.add(ep, cmdFd, Epoll.EPOLLIN, TAG_CMD);
        this.thread = Thread.ofPlatform().name(this.name).daemon().unstarted(this::run);
    }

    public String name() {
        return name;
    }

    public void start() {
        alive = true;
        thread.start();
    }

    /**
     * What the worker is doing, for stall reports: thread state and where it is (e.g. parked in
     * {@code epoll_wait}), read without asking the worker (a command would wake it and hide a lost
     * wake-up). Any thread.
     */
    public String diagnostics() {
        StringBuilder b = new StringBuilder(name).append(": ").append(thread.getState());
        StackTraceElement[] st = thread.getStackTrace();
        for (int i = 0; i < Math.min(st.length, 6); i++) {
            b.append("\n    at ").append(st[i]);
        }
        return b.toString();
    }

    /**
     * Runs {@code task} on the worker thread and waits for it (any thread but the worker). Runs it
     * directly when the worker has not started or has exited.
     *
     * @throws IllegalStateException when the worker does not acknowledge within the timeout
     */
    <T> T call(Callable<T> task) {
        if (!alive || Thread.currentThread() == thread) {
            synchronized (this) {
                return runInline(task);
            }
        }
        Command<T> c = new Command<>(task);
        while (!commands.offer(c)) {
            Thread.onSpinWait();
        }
        EventFd.signal(cmdFd);
        try {
            if (!c.done.await(ackTimeoutMs, TimeUnit.MILLISECONDS)) {
                throw new IllegalStateException(name + ": worker did not acknowledge a command within "
                        + ackTimeoutMs + " ms");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(name + ": interrupted waiting for the worker", e);
        }
        if (c.error != null) {
            if (c.error instanceof RuntimeException re) {
                throw re;
            }
            if (c.error instanceof Error er) {
                throw er;
            }
            throw new IllegalStateException(name + ": command failed", c.error);
        }
        return c.result;
    }

    private static <T> T runInline(Callable<T> task) {
        try {
            return task.call();
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    // ------------------------------------------------------------------ worker-thread operations

    /** Starts running {@code qp} (worker thread, through {@link #call}). */
    void onAdd(QueuePair qp) {
        if (pairs.contains(qp)) {
            return;
        }
        pairs.add(qp);
        retag();
    }

    /** Stops running {@code qp}: its fds leave the epoll set (worker thread, through {@link #call}). */
    void onRemove(QueuePair qp) {
        if (pairs.remove(qp)) {
            qp.detach();
            retag();
        }
    }

    private void retag() {
        for (QueuePair qp : pairs) {
            qp.detach();
        }
        for (int i = 0; i < pairs.size(); i++) {
            pairs.get(i).attach(ep, (long) (i + 1) << KIND_BITS);
        }
        active = pairs.toArray(new QueuePair[0]);
    }

    void onSetBusyPollNanos(long nanos) {
        spin.setBusyPollNanos(nanos);
    }

    void onSetAdaptiveSpinNanos(long nanos) {
        spin.setAdaptiveSpinNanos(nanos);
    }

    // ------------------------------------------------------------------ the loop

    private void run() {
        spin.reset(System.nanoTime());
        while (running) {
            doWork();
        }
        alive = false;
        // Acknowledge anything submitted meanwhile so no control thread waits for the timeout.
        drainCommands();
    }

    /**
     * One duty cycle: commands, a TX and an RX batch per pair, then — when there was nothing to do —
     * spin, or arm notifications and sleep. A method of its own rather than the body of
     * {@link #run}'s loop, so the JIT compiles it as an ordinary method (not an on-stack replacement
     * of a loop that never returns) and, when a path taken for the first time deoptimises it,
     * recompiles this method only.
     */
    private void doWork() {
        long now = System.nanoTime();
        int work = drainCommands();
        if (!running) {
            return;
        }
        QueuePair[] qps = active;
        for (QueuePair qp : qps) {
            try {
                work += qp.doWork(now);
            } catch (RuntimeException | Error e) {
                pairFailed(qp, e);
            }
        }
        if (work > 0) {
            spin.onWork(now);
            return;
        }
        for (QueuePair qp : qps) {
            qp.counters().increment(Counter.EMPTY_POLLS);
        }
        if (spin.keepPolling(now)) {
            for (QueuePair qp : qps) {
                qp.polling();
            }
            Thread.onSpinWait();
            return;
        }
        for (QueuePair qp : qps) {
            try {
                if (qp.prepareToSleep()) {
                    return;
                }
            } catch (RuntimeException | Error e) {
                pairFailed(qp, e);
                return;
            }
        }
        sleep(qps);
        spin.onWake(System.nanoTime());
    }

    private void pairFailed(QueuePair qp, Throwable e) {
        if (MemoryFault.is(e)) {
            qp.onMemoryFault(e);
            return;
        }
        LOG.log(System.Logger.Level.ERROR, qp.name() + ": worker cycle failed; rings of this queue pair stopped", e);
        try {
            qp.onReset();
        } catch (RuntimeException | Error ignored) {
            // keep serving commands: a thread that dies here leaves every later call to time out
        }
    }

    private void sleep(QueuePair[] qps) {
        boolean polled = false;
        for (QueuePair qp : qps) {
            polled |= qp.polled();
        }
        int n = Epoll.wait(ep, events, MAX_EVENTS, polled ? POLL_INTERVAL_MS : -1);
        for (QueuePair qp : qps) {
            qp.counters().increment(Counter.WAKEUPS);
        }
        for (int i = 0; i < n; i++) {
            long tag = Epoll.data(events, i);
            if (tag == TAG_CMD) {
                EventFd.drain(cmdFd);
                continue;
            }
            int slot = (int) (tag >>> KIND_BITS) - 1;
            if (slot >= 0 && slot < qps.length) {
                try {
                    qps[slot].onEvent((int) (tag & ((1 << KIND_BITS) - 1)), Epoll.events(events, i));
                } catch (RuntimeException | Error e) {
                    pairFailed(qps[slot], e);
                }
            }
        }
        if (polled) {
            for (QueuePair qp : qps) {
                qp.polledWake();
            }
        }
    }

    private int drainCommands() {
        int n = 0;
        Command<?> c;
        while (n < COMMANDS_PER_CYCLE && (c = commands.poll()) != null) {
            c.run();
            n++;
        }
        return n;
    }

    /**
     * Resets every pair, stops the thread and frees its resources (and its pairs'). Control thread.
     */
    @Override
    public void close() {
        if (alive) {
            try {
                call(() -> {
                    for (QueuePair qp : pairs) {
                        qp.onReset();
                    }
                    running = false;
                    return null;
                });
                thread.join(ackTimeoutMs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (IllegalStateException e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: {1}; the worker is stuck (jstack shows where);"
                        + " its resources stay allocated until the process exits", name, e.getMessage());
            }
        }
        if (!thread.isAlive()) {
            for (QueuePair qp : pairs) {
                qp.detach();
                qp.close();
            }
            pairs.clear();
            Fds.closeQuietly(cmdFd);
            Fds.closeQuietly(ep);
            arena.close();
        }
    }

    /** A control command: the work, its result or failure, and the acknowledgement latch. */
    private static final class Command<T> {
        final Callable<T> task;
        final CountDownLatch done = new CountDownLatch(1);
        T result;
        Throwable error;

        Command(Callable<T> task) {
            this.task = task;
        }

        void run() {
            try {
                result = task.call();
            } catch (Exception | Error e) {
                error = e;
            }
            done.countDown();
        }
    }
}
