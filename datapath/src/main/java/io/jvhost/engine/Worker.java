package io.jvhost.engine;

import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Sched;
import io.jvhost.stats.Counter;
import io.jvhost.stats.WorkerLoad;
import io.jvhost.stats.WorkerStats;
import org.jctools.queues.varhandle.MpscVarHandleArrayQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A worker thread ({@code jvhost-<name>}): an agent with a duty cycle over the {@link QueuePair}s it
 * runs (Aeron's {@code Sender} / Agrona's {@code AgentRunner} are the shape). Pairs join and leave
 * through commands ({@link #onAdd} / {@link #onRemove}) while the others keep running; a
 * {@link WorkerPool} decides which worker a pair joins. A worker may be pinned to one CPU.
 *
 * <h2>Duty cycle</h2>
 * Each cycle reads the clock once, drains control commands (bounded), and gives every pair one TX
 * and one RX batch bounded by the weight (so neither direction, nor one pair, starves the others;
 * each batch ends with one used publish and at most one call), a different pair going first each
 * cycle. A cycle that did work is followed by another at once. On a worker with several pairs, a
 * pair that stayed empty for {@value #PARK_AFTER} cycles is parked (notifications armed, not polled)
 * until an epoll event or a command concerns it; a pair whose tap pushed back or ran empty is read
 * or written again once epoll says so. While the worker stays awake, one non-blocking
 * {@code epoll_wait} per cycle serves all of these. An idle cycle asks the {@link SpinPolicy}
 * whether to keep polling; if not, every (unparked) pair re-enables guest notifications and
 * re-checks its rings (no lost wake-up), and the worker
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
 *
 * <p>HotSpot reports a fault in an unsafe (MemorySegment) access asynchronously: the access returns
 * and the {@code InternalError} is raised at the thread's next safepoint poll or native-call return,
 * which after inlining may lie in the next pair's code or past every pair's handler. So each pair's
 * share of a cycle (and each command, event and notification arming) ends with a native call
 * ({@link Sched#currentCpu}) whose return delivers a pending fault there, inside that pair's handler;
 * and a failure that still escapes the cycle is caught by the loop and charged to the pair that ran
 * last. Nothing a pair does can end the thread.
 */
public final class Worker implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Worker.class.getName());

    private static final long TAG_CMD = 0;
    private static final int KIND_BITS = 2;
    private static final int MAX_EVENTS = 64;
    private static final int POLL_INTERVAL_MS = 1;
    private static final int COMMANDS_PER_CYCLE = 16;
    /** Empty cycles in a row after which a pair of a multi-pair worker is parked ({@link QueuePair#maybePark}). */
    private static final int PARK_AFTER = 16;

    private static final QueuePair[] NO_PAIRS = new QueuePair[0];

    private final String name;
    private final int index;
    private final int cpu;
    private final long ackTimeoutMs;
    private final Arena arena = Arena.ofShared();
    private final MpscVarHandleArrayQueue<Command<?>> commands = new MpscVarHandleArrayQueue<>(64);
    private final int ep;
    private final int cmdFd;
    private final MemorySegment events;
    private final Thread thread;
    private final SpinPolicy spin;
    private final WorkerLoad load = new WorkerLoad();
    private volatile int tid;

    // ---- worker-owned state ----
    private final List<QueuePair> pairs = new ArrayList<>();
    /** Epoll tag slot → pair; a pair keeps its slot while it stays, so a join or leave re-registers nothing else. */
    private QueuePair[] slots = new QueuePair[4];
    private QueuePair[] active = NO_PAIRS;
    /** The pair that went first in the last cycle (index into {@link #active}). */
    private int first;
    /** The pair whose code ran last on this thread: a fault that surfaces between pairs is its. */
    private QueuePair last;
    /** Start of the period being accounted, and what the worker did in it ({@link WorkerLoad} *_NANOS). */
    private long mark;
    private int markKind = WorkerLoad.IDLE_NANOS;
    private boolean running = true;
    private volatile boolean alive;

    /**
     * A worker of its own (not in a pool, not pinned).
     *
     * @param name   thread name suffix ({@code jvhost-<name>})
     * @param config weight, busy-poll, adaptive spin, acknowledgement timeout
     */
    public Worker(String name, WorkerConfig config) {
        this(name, config, -1, -1);
    }

    /**
     * @param name   thread name suffix ({@code jvhost-<name>})
     * @param config weight, busy-poll, adaptive spin, acknowledgement timeout
     * @param index  index in its pool (stats), or -1
     * @param cpu    the CPU the thread pins itself to when it starts, or -1 (not pinned)
     */
    Worker(String name, WorkerConfig config, int index, int cpu) {
        this.name = "jvhost-" + name;
        this.index = index;
        this.cpu = cpu;
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

    /** Index in its pool, or -1. */
    public int index() {
        return index;
    }

    /** The CPU it is pinned to, or -1. */
    public int cpu() {
        return cpu;
    }

    /** Queue pairs it holds now. Any thread. */
    public int queuePairs() {
        return load.queuePairs();
    }

    /** Its load so far. Any thread; does not wake the worker. */
    public WorkerStats stats() {
        return load.snapshot(index, name, cpu, tid);
    }

    /** Whether the thread runs (started and not ended). Any thread. */
    public boolean running() {
        return thread.isAlive();
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
        int slot = 0;
        while (slot < slots.length && slots[slot] != null) {
            slot++;
        }
        if (slot == slots.length) {
            slots = Arrays.copyOf(slots, slots.length * 2);
        }
        qp.attach(ep, (long) (slot + 1) << KIND_BITS);
        slots[slot] = qp;
        pairs.add(qp);
        published();
    }

    /** Stops running {@code qp}: its fds leave the epoll set (worker thread, through {@link #call}). */
    void onRemove(QueuePair qp) {
        if (pairs.remove(qp)) {
            qp.detach();
            for (int i = 0; i < slots.length; i++) {
                if (slots[i] == qp) {
                    slots[i] = null;
                }
            }
            if (last == qp) {
                last = null;
            }
            published();
        }
    }

    private void published() {
        active = pairs.toArray(NO_PAIRS);
        List<String> names = new ArrayList<>(pairs.size());
        for (QueuePair qp : pairs) {
            names.add(qp.name());
        }
        load.setPairs(List.copyOf(names));
    }

    void onSetBusyPollNanos(long nanos) {
        spin.setBusyPollNanos(nanos);
    }

    void onSetAdaptiveSpinNanos(long nanos) {
        spin.setAdaptiveSpinNanos(nanos);
    }

    // ------------------------------------------------------------------ the loop

    private void run() {
        pin();
        tid = Sched.gettid(); // published once pinned
        spin.reset(System.nanoTime());
        mark = System.nanoTime();
        while (running) {
            try {
                doWork();
            } catch (RuntimeException | Error e) {
                escaped(e);
            }
        }
        alive = false;
        // Acknowledge anything submitted meanwhile so no control thread waits for the timeout.
        drainCommands();
    }

    private void pin() {
        if (cpu < 0) {
            return;
        }
        BitSet one = new BitSet();
        one.set(cpu);
        try {
            Sched.setAffinity(0, one);
            LOG.log(System.Logger.Level.DEBUG, "{0}: pinned to CPU {1}", name, cpu);
        } catch (NativeException | IllegalArgumentException e) {
            LOG.log(System.Logger.Level.WARNING, "{0}: not pinned to CPU {1} ({2}); it runs on any allowed CPU",
                    name, cpu, e.getMessage());
        }
    }

    /**
     * A failure that left the duty cycle outside every pair's handler: an asynchronous guest-memory
     * fault raised after its pair's code, or a bug in the loop itself. Charged to the pair that ran
     * last (no other pair touched guest memory since); the loop goes on.
     */
    private void escaped(Throwable e) {
        QueuePair qp = last;
        if (qp != null && pairs.contains(qp)) {
            pairFailed(qp, e);
            return;
        }
        load.increment(WorkerLoad.PAIR_FAULTS);
        LOG.log(System.Logger.Level.ERROR, name + ": worker cycle failed outside any queue pair; carrying on", e);
    }

    /**
     * The end of a pair's share: a native call whose return delivers a guest-memory fault still
     * pending from that pair's accesses (see the class comment), and the CPU for stats.
     */
    private void settle() {
        load.setCpu(Sched.currentCpu());
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
        load.add(markKind, now - mark);
        mark = now;
        int work = drainCommands();
        if (!running) {
            return;
        }
        QueuePair[] qps = active;
        if (work > 0) {
            // A command may have changed what a parked pair waits for: poll everyone once.
            for (QueuePair qp : qps) {
                qp.unpark();
            }
        }
        // A different pair goes first each cycle: where pairs compete for something outside the
        // worker (tap space, a shared egress), none gets it first every time.
        int n = qps.length;
        int j = n == 0 ? 0 : (first = first + 1 >= n ? 0 : first + 1);
        boolean lookAtEvents = false;
        // A worker with one pair never parks it: its idle cycles cost nothing extra, and it keeps
        // busy-poll's promise of no guest kick while it polls.
        boolean park = n > 1;
        for (int i = 0; i < n; i++) {
            QueuePair qp = qps[j];
            if (++j == n) {
                j = 0;
            }
            if (qp.parked()) {
                lookAtEvents = true;
                continue;
            }
            last = qp;
            try {
                int w = qp.doWork(now);
                work += w;
                boolean parked = park && qp.maybePark(w, PARK_AFTER);
                if (parked) {
                    load.increment(WorkerLoad.PARKS);
                }
                lookAtEvents |= parked || qp.waitsForTap();
                settle();
            } catch (RuntimeException | Error e) {
                pairFailed(qp, e);
            }
        }
        if (work > 0) {
            if (lookAtEvents) {
                // A pair waits for its tap (full, or found empty) or is parked while the worker stays
                // awake: one non-blocking look at the epoll set for all of them, instead of waiting
                // until the worker sleeps, or a read, write or ring check per pair per cycle.
                pollEvents(qps);
            }
            load.increment(WorkerLoad.BUSY_CYCLES);
            markKind = WorkerLoad.BUSY_NANOS;
            spin.onWork(now);
            return;
        }
        load.increment(WorkerLoad.IDLE_CYCLES);
        markKind = WorkerLoad.IDLE_NANOS;
        for (QueuePair qp : qps) {
            qp.counters().increment(Counter.EMPTY_POLLS);
        }
        if (spin.keepPolling(now)) {
            for (QueuePair qp : qps) {
                if (!qp.parked()) {
                    qp.polling();
                }
            }
            if (lookAtEvents) {
                pollEvents(qps);
            }
            Thread.onSpinWait();
            return;
        }
        for (QueuePair qp : qps) {
            if (qp.parked()) {
                continue; // armed when it was parked
            }
            last = qp;
            try {
                boolean arrived = qp.prepareToSleep();
                settle();
                if (arrived) {
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
        load.increment(WorkerLoad.PAIR_FAULTS);
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
        long asleep = System.nanoTime();
        load.add(WorkerLoad.IDLE_NANOS, asleep - mark);
        load.increment(WorkerLoad.SLEEPS);
        int n = Epoll.wait(ep, events, MAX_EVENTS, polled ? POLL_INTERVAL_MS : -1);
        mark = System.nanoTime();
        load.add(WorkerLoad.SLEEP_NANOS, mark - asleep);
        markKind = WorkerLoad.IDLE_NANOS;
        for (QueuePair qp : qps) {
            qp.counters().increment(Counter.WAKEUPS);
        }
        dispatch(n);
        if (polled) {
            for (QueuePair qp : qps) {
                qp.polledWake();
            }
        }
    }

    /** The events of a cycle that does not sleep (see {@link QueuePair#waitsForTap}). */
    private void pollEvents(QueuePair[] qps) {
        for (QueuePair qp : qps) {
            last = qp;
            try {
                if (qp.waitsForTap()) {
                    qp.armTapWait();
                }
            } catch (RuntimeException | Error e) {
                pairFailed(qp, e);
            }
        }
        dispatch(Epoll.wait(ep, events, MAX_EVENTS, 0));
    }

    private void dispatch(int n) {
        for (int i = 0; i < n; i++) {
            long tag = Epoll.data(events, i);
            if (tag == TAG_CMD) {
                EventFd.drain(cmdFd);
                continue;
            }
            int slot = (int) (tag >>> KIND_BITS) - 1;
            QueuePair qp = slot >= 0 && slot < slots.length ? slots[slot] : null;
            if (qp != null) {
                last = qp;
                try {
                    qp.onEvent((int) (tag & ((1 << KIND_BITS) - 1)), Epoll.events(events, i));
                    settle();
                } catch (RuntimeException | Error e) {
                    pairFailed(qp, e);
                }
            }
        }
    }

    private int drainCommands() {
        int n = 0;
        Command<?> c;
        last = null;
        while (n < COMMANDS_PER_CYCLE && (c = commands.poll()) != null) {
            c.run();
            n++;
        }
        if (n > 0) {
            load.add(WorkerLoad.COMMANDS, n);
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

    /**
     * A native call whose return delivers a guest-memory fault still pending from this thread's
     * earlier unsafe accesses (see the class comment), so that it surfaces in the caller's handler.
     */
    static void deliverPendingFault() {
        Sched.currentCpu();
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
                deliverPendingFault();
            } catch (Exception | Error e) {
                error = e;
            }
            done.countDown();
        }
    }
}
