package io.jvhost.engine;

import io.jvhost.stats.QueueLatency;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.Counter;
import io.jvhost.stats.RingState;
import io.jvhost.stats.jfr.JvhostEvents;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.nativ.NativeException;
import io.jvhost.net.PacketCapture;
import io.jvhost.net.RxEngine;
import io.jvhost.net.TapIo;
import io.jvhost.net.TxEngine;
import io.jvhost.net.TxValidator;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.vhostuser.RingConfig;
import io.jvhost.virtq.SplitVirtqueue;
import io.jvhost.virtq.VirtqError;
import org.jctools.queues.varhandle.MpscVarHandleArrayQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * One thread per queue pair ({@code jvhost-<dev>-q<N>}) moving frames between the pair's RX/TX
 * virtqueues and its tap queue fd.
 *
 * <h2>Duty cycle</h2>
 * Each cycle reads the clock once, drains control commands (bounded), sends up to {@code weight}
 * TX frames and receives up to {@code weight} RX frames (so neither direction starves the other;
 * each batch ends with one used-index publish and at most one call-eventfd write, suppressed when
 * EVENT_IDX / the flags say the guest does not want it). A cycle that did work is followed by
 * another at once. When idle the worker busy-polls for {@link WorkerConfig#busyPollNanos()} (or,
 * when recent idle gaps were short, for the adaptive spin {@link WorkerConfig#adaptiveSpinNanos()}
 * if that is longer), then
 * re-enables guest notifications, re-checks the rings (the store→load fence lives in
 * {@link SplitVirtqueue#enableNotification()}, so a chain added concurrently is never missed) and
 * sleeps in {@code epoll_wait} on: the TX and RX kick eventfds, the tap (EPOLLIN only while the
 * guest has RX buffers, EPOLLOUT only while TX is backpressured), and the command eventfd. Rings
 * without a kick fd (polled mode) are re-checked every millisecond.
 *
 * <h2>Control</h2>
 * The control thread never touches worker state: it submits a {@link Task} with {@link #call},
 * which goes through a JCTools MPSC queue plus an eventfd wake-up and returns only when the
 * worker has run it — so a stopped ring, a disabled ring or a swapped memory table is quiesced
 * before the control thread replies to the front-end (and before it unmaps an old table).
 */
public final class QueuePairWorker implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(QueuePairWorker.class.getName());

    /** Work run on the worker thread; returns a result for the control thread. */
    @FunctionalInterface
    public interface Task {
        int run(QueuePairWorker w);
    }

    static final long TAG_CMD = 0;
    static final long TAG_TX_KICK = 1;
    static final long TAG_RX_KICK = 2;
    static final long TAG_TAP = 3;
    private static final int MAX_EVENTS = 8;
    private static final int POLL_INTERVAL_MS = 1;
    private static final int COMMANDS_PER_CYCLE = 16;
    /** Role of the even vring of a pair (virtio-net: receiveq). */
    public static final int RX = 0;
    /** Role of the odd vring of a pair (transmitq). */
    public static final int TX = 1;

    private final String name;
    private final String device;
    private final int queuePair;
    private final WorkerConfig config;
    private final Arena arena = Arena.ofShared();
    private final QueueCounters counters = new QueueCounters();
    private final QueueLatency latency;
    private final SplitVirtqueue txq;
    private final SplitVirtqueue rxq;
    private final TxEngine tx;
    private final RxEngine rx;
    private final MpscVarHandleArrayQueue<Command> commands = new MpscVarHandleArrayQueue<>(64);
    private final int ep;
    private final int cmdFd;
    private final MemorySegment events;
    private final Thread thread;
    /** The TX engine's io_uring ({@link TapIo#URING}), else null. */
    private final IoUring ring;
    /** The RX engine's io_uring for batched single-buffer reads ({@link TapIo#URING} and {@link RxEngine#BATCH}), else null. */
    private final IoUring rxRing;

    // ---- worker-owned state ----
    private final int tapFd;
    private final boolean[] started = new boolean[2];
    private final boolean[] enabled = {true, true};
    private final int[] kickFd = {-1, -1};
    private final int[] callFd = {-1, -1};
    private final int[] errFd = {-1, -1};
    private int tapInterest = -1;
    private long busyPollNanos;
    private long adaptiveSpinNanos = WorkerConfig.adaptiveSpinNanos();
    /** One bit per recent idle gap (newest lowest), set when the gap was shorter than the adaptive spin. */
    private int shortGaps;
    /** Duty-cycle state (worker thread only): last cycle with work or wake-up, last with work, idle since. */
    private long lastWork;
    private long lastRealWork;
    private boolean idle;
    private boolean running = true;
    private volatile boolean alive;
    /** {@link RingState} ordinals of RX (low byte) and TX, republished by every ring state change. */
    private volatile int ringStates;

    /**
     * @param device   device name, for the thread name and logs
     * @param tapFd    the pair's tap queue fd (non-blocking, owned by the caller)
     * @param ringSize largest ring size the device accepts (sizes the RX window)
     */
    public QueuePairWorker(String device, int queuePair, int tapFd, WorkerConfig config, int ringSize) {
        this.name = "jvhost-" + device + "-q" + queuePair;
        this.device = device;
        this.queuePair = queuePair;
        this.latency = new QueueLatency(device, queuePair);
        this.config = config;
        this.tapFd = tapFd;
        this.txq = new SplitVirtqueue(device + " tx" + queuePair);
        this.rxq = new SplitVirtqueue(device + " rx" + queuePair);
        this.tx = new TxEngine(queuePair, txq, arena, counters, latency);
        this.rx = new RxEngine(queuePair, rxq, arena, counters, latency, ringSize);
        this.ring = openRing(name, Math.max(8, Math.min(config.weight(), 64)));
        tx.useRing(ring, arena);
        this.rxRing = ring != null && RxEngine.BATCH ? openRing(name, RxEngine.RING_BATCH) : null;
        rx.useRing(rxRing);
        this.ep = Epoll.create();
        this.cmdFd = EventFd.create(0, true);
        this.events = Epoll.allocateEvents(arena, MAX_EVENTS);
        Epoll.add(ep, cmdFd, Epoll.EPOLLIN, TAG_CMD);
        Epoll.add(ep, tapFd, 0, TAG_TAP);
        tapInterest = 0;
        txq.setBrokenHandler(q -> broken(TX, q));
        rxq.setBrokenHandler(q -> broken(RX, q));
        setFeatures(0, 1500);
        this.busyPollNanos = config.busyPollNanos();
        this.thread = Thread.ofPlatform().name(name).daemon().unstarted(this::run);
    }

    private static IoUring openRing(String name, int entries) {
        if (TapIo.effective() != TapIo.URING) {
            return null;
        }
        try {
            return IoUring.create(entries);
        } catch (NativeException e) {
            LOG.log(System.Logger.Level.WARNING, "{0}: io_uring setup failed ({1}); one system call per frame"
                    + " (lower throughput): raise the memlock limit (LimitMEMLOCK=infinity, ulimit -l) or set"
                    + " -Djvhost.tap.io=syscalls to accept it",
                    name, e.getMessage());
            return null;
        }
    }

    /** Whether TX goes through io_uring (the {@link TapIo} property and the kernel allowed it). */
    public boolean usesRing() {
        return ring != null;
    }

    public void start() {
        alive = true;
        thread.start();
    }

    public String name() {
        return name;
    }

    public int queuePair() {
        return queuePair;
    }

    /** Counters: written by the worker, readable from any thread. */
    public QueueCounters counters() {
        return counters;
    }

    /** Histograms: recorded by the worker, readable from any thread. */
    public QueueLatency latency() {
        return latency;
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
     * Why a ring of this pair is broken ({@link #RX} or {@link #TX}), or null. Any thread (a volatile
     * read): stats, tests.
     */
    public VirtqError brokenReason(int role) {
        return queue(role).brokenReason();
    }

    /** The detail logged when the ring broke, or null. Any thread. */
    public String brokenMessage(int role) {
        return queue(role).brokenMessage();
    }

    /**
     * The state of ring {@code role} ({@link #RX} or {@link #TX}) as of the last ring command, broken as
     * soon as it breaks. Any thread (volatile reads; never wakes the worker): metrics.
     */
    public RingState ringState(int role) {
        if (queue(role).isBroken()) {
            return RingState.BROKEN;
        }
        return RingState.of((ringStates >>> (role * 8)) & 0xff);
    }

    private void publishRingStates() {
        int s = 0;
        for (int role = RX; role <= TX; role++) {
            RingState r = !started[role] ? RingState.STOPPED : enabled[role] ? RingState.ENABLED : RingState.DISABLED;
            s |= r.ordinal() << (role * 8);
        }
        ringStates = s;
    }

    /** The virtqueue state (tests, diagnostics); touch only through {@link #call}. */
    SplitVirtqueue queue(int role) {
        return role == TX ? txq : rxq;
    }

    /**
     * Runs {@code task} on the worker thread and waits for it (control thread; any thread but the
     * worker). Runs it directly when the worker has not started or has exited.
     *
     * @throws IllegalStateException when the worker does not acknowledge within the timeout
     */
    public int call(Task task) {
        if (!alive || Thread.currentThread() == thread) {
            synchronized (this) {
                return task.run(this);
            }
        }
        Command c = new Command(task);
        while (!commands.offer(c)) {
            Thread.onSpinWait();
        }
        EventFd.signal(cmdFd);
        try {
            if (!c.done.await(config.ackTimeoutMs(), TimeUnit.MILLISECONDS)) {
                throw new IllegalStateException(name + ": worker did not acknowledge a command within "
                        + config.ackTimeoutMs() + " ms");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(name + ": interrupted waiting for the worker", e);
        }
        if (c.error != null) {
            if (c.error instanceof RuntimeException re) {
                throw re;
            }
            throw new IllegalStateException(name + ": command failed", c.error);
        }
        return c.result;
    }

    // ------------------------------------------------------------------------------------------
    // Worker-thread operations (run them through call())

    /** Starts a ring (even index: RX, odd: TX) from a vhost-user ring configuration. */
    public int startRing(RingConfig r) {
        int role = r.queueIndex() & 1;
        SplitVirtqueue q = queue(role);
        if (started[role]) {
            stopRing(role);
        }
        q.reset();
        q.setSize(r.size());
        q.setFeatures(r.features());
        q.setMemory(r.memory());
        if (!q.setAddresses(r.descAddr(), r.availAddr(), r.usedAddr())) {
            throw new IllegalArgumentException(name + ": ring " + r.queueIndex() + " addresses outside guest memory");
        }
        q.setBase(r.baseIndex());
        q.start();
        started[role] = true;
        enabled[role] = r.enabled();
        callFd[role] = r.callFd();
        errFd[role] = r.errFd();
        setKickFd(role, r.kickFd());
        if (role == TX) {
            tx.setCallFd(r.callFd());
            tx.setEnabled(r.enabled());
        } else {
            rx.setCallFd(r.callFd());
            rx.setEnabled(r.enabled());
        }
        publishRingStates();
        return 0;
    }

    /** Stops a ring and returns the avail index the next start must use. */
    public int stopRing(int role) {
        if (!started[role]) {
            return queue(role).base();
        }
        if (role == TX) {
            tx.releasePending();
        } else {
            rx.releaseWindow();
        }
        int base = queue(role).stop();
        started[role] = false;
        setKickFd(role, -1);
        callFd[role] = -1;
        errFd[role] = -1;
        if (role == TX) {
            tx.setCallFd(-1);
        } else {
            rx.setCallFd(-1);
        }
        publishRingStates();
        return base;
    }

    public boolean ringStarted(int role) {
        return started[role];
    }

    public int setRingEnabled(int role, boolean on) {
        if (role == TX && !on && enabled[TX] && txActive()) {
            flushTx();
        }
        enabled[role] = on;
        if (role == TX) {
            tx.setEnabled(on);
        } else {
            if (!on) {
                rx.releaseWindow();
            }
            rx.setEnabled(on);
        }
        publishRingStates();
        return 0;
    }

    /**
     * Sends what the driver made available while TX was enabled before the disable takes effect.
     * A disabled TX ring discards (vhost-user.rst, "Ring states"), but frames posted before the
     * disable are the driver's sent frames: DPDK virtio-user disables every ring at port stop and
     * counts them as transmitted, so dropping them made the counts of the two ends disagree by
     * whatever the worker had not reached yet. Bounded by one ring's worth; stops at backpressure
     * (a held chain is still written later).
     */
    private void flushTx() {
        int left = txq.size();
        while (left > 0 && !tx.backpressured()) {
            int n = tx.process(Math.min(left, config.weight()), System.nanoTime());
            if (n == 0) {
                break;
            }
            left -= n;
        }
    }

    /**
     * A new call eventfd. On a running ring the new fd is signalled once: QEMU (vhost_virtqueue_start)
     * sends SET_VRING_CALL only after SET_VRING_KICK has started the ring, so after a pause
     * ({@code stop}/{@code cont}) or a driver reload the ring runs for a moment with the previous call
     * fd, which nobody reads any more (QEMU sets up new guest notifiers at every start). A call
     * made in that window is lost, and with
     * EVENT_IDX no later call comes until the driver moves {@code used_event}, which it does only
     * when it is called: with per-queue MSI-X vectors that queue would stall. One spurious
     * interrupt is harmless (the driver just looks at its used ring); libvhost-user does the same.
     */
    public int setCallFd(int role, int fd) {
        callFd[role] = fd;
        if (role == TX) {
            tx.setCallFd(fd);
        } else {
            rx.setCallFd(fd);
        }
        if (started[role] && fd >= 0) {
            try {
                EventFd.signal(fd);
            } catch (RuntimeException e) {
                // not an eventfd, or a full one: the courtesy call is skipped, the fd is still used
                LOG.log(System.Logger.Level.DEBUG, "{0}: signalling the new call fd failed: {1}", name, e.getMessage());
            }
        }
        return 0;
    }

    public int setErrFd(int role, int fd) {
        errFd[role] = fd;
        return 0;
    }

    /** Switches to a new memory table; when this returns the worker no longer uses the old one. */
    public int setMemory(GuestMemory memory) {
        // Held chains point into the old mappings: give them back, they are re-taken via the new table.
        tx.releasePending();
        rx.releaseWindow();
        boolean ok = txq.setMemory(memory) & rxq.setMemory(memory);
        return ok ? 0 : -1;
    }

    /** New negotiated features and MTU: header size, validation and RX geometry. */
    public int setFeatures(long features, int mtu) {
        int hdrSize = VirtioNetHdr.size(features);
        tx.configure(tapFd, hdrSize, new TxValidator(features, mtu));
        rx.configure(tapFd, hdrSize, VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF),
                VirtioFeatures.guestGso(features), mtu);
        return 0;
    }

    /**
     * Changes how long the idle worker keeps polling before it sleeps (0: sleep at once), e.g. to
     * switch between latency and power modes at run time.
     */
    public int setBusyPollNanos(long nanos) {
        if (nanos < 0) {
            throw new IllegalArgumentException("busyPollNanos " + nanos);
        }
        busyPollNanos = nanos;
        return 0;
    }

    /**
     * Changes the adaptive spin ({@link WorkerConfig#ADAPTIVE_SPIN_PROP_NAME}; 0: off, the worker
     * then sleeps as soon as busy-poll, if any, has expired).
     */
    public int setAdaptiveSpinNanos(long nanos) {
        if (nanos < 0) {
            throw new IllegalArgumentException("adaptiveSpinNanos " + nanos);
        }
        adaptiveSpinNanos = nanos;
        shortGaps = 0;
        return 0;
    }

    public int setCapture(PacketCapture capture) {
        tx.setCapture(capture);
        rx.setCapture(capture);
        return 0;
    }

    /**
     * Stops both rings and clears broken state. A ring whose stop faults on guest memory (the
     * front-end shrank it) is forgotten anyway, so the pair is always clean for the next session.
     */
    public int reset() {
        Throwable failure = null;
        for (int role = TX; role >= RX; role--) {
            try {
                stopRing(role);
            } catch (RuntimeException | Error e) {
                if (!MemoryFault.is(e) && failure == null) {
                    failure = e;
                }
                forgetRing(role);
            }
        }
        txq.reset();
        rxq.reset();
        if (failure instanceof RuntimeException re) {
            throw re;
        }
        if (failure instanceof Error er) {
            throw er;
        }
        return 0;
    }

    /** {@link #stopRing} without touching guest memory: after a failed stop. */
    private void forgetRing(int role) {
        started[role] = false;
        try {
            setKickFd(role, -1);
        } catch (RuntimeException ignored) {
            // the fd is going away with the session anyway
        }
        callFd[role] = -1;
        errFd[role] = -1;
        if (role == TX) {
            tx.releasePending();
            tx.setCallFd(-1);
        } else {
            rx.releaseWindow();
            rx.setCallFd(-1);
        }
        publishRingStates();
    }

    // ------------------------------------------------------------------------------------------

    private void setKickFd(int role, int fd) {
        long tag = role == TX ? TAG_TX_KICK : TAG_RX_KICK;
        if (kickFd[role] >= 0) {
            try {
                Epoll.remove(ep, kickFd[role]);
            } catch (RuntimeException e) {
                // already closed by the front-end: epoll dropped it itself
            }
        }
        kickFd[role] = fd;
        if (fd >= 0) {
            Epoll.add(ep, fd, Epoll.EPOLLIN, tag);
        }
    }

    /** A ring of this pair was marked broken (worker thread): counted, recorded, the front-end told. */
    private void broken(int role, SplitVirtqueue q) {
        counters.increment(role == TX ? Counter.TX_RING_BROKEN : Counter.RX_RING_BROKEN);
        JvhostEvents.ringBroken(device, queuePair, role == TX ? JvhostEvents.TX : JvhostEvents.RX, q.brokenReason(), q.brokenMessage());
        signalError(role);
    }

    private void signalError(int role) {
        int fd = errFd[role];
        if (fd >= 0) {
            EventFd.signal(fd);
        }
    }

    private boolean txActive() {
        return started[TX] && !txq.isBroken();
    }

    private boolean rxActive() {
        return started[RX] && enabled[RX] && !rxq.isBroken();
    }

    private void run() {
        lastWork = System.nanoTime();
        lastRealWork = lastWork;
        idle = false;
        while (running) {
            try {
                doWork();
            } catch (RuntimeException | Error e) {
                if (MemoryFault.is(e)) {
                    memoryFault(e);
                    continue;
                }
                LOG.log(System.Logger.Level.ERROR, name + ": worker cycle failed; rings of this queue pair stopped", e);
                try {
                    reset();
                } catch (RuntimeException | Error ignored) {
                    // keep serving commands: a thread that dies here leaves every later call() to time out
                }
            }
        }
        alive = false;
        // Acknowledge anything submitted meanwhile so no control thread waits for the timeout.
        drainCommands();
    }

    /**
     * One duty cycle: commands, a TX and an RX batch, then — when there was nothing to do — spin,
     * or arm notifications and sleep. A method of its own rather than the body of {@link #run}'s
     * loop, so the JIT compiles it as an ordinary method (not an on-stack replacement of a loop that
     * never returns) and, when a path taken for the first time deoptimises it (the first time the
     * RX ring runs dry, say), recompiles this method only.
     */
    private void doWork() {
        long now = System.nanoTime();
        int work = drainCommands();
        if (!running) {
            return;
        }
        boolean txOn = txActive();
        boolean rxOn = rxActive();
        if (txOn && !tx.backpressured()) {
            work += tx.process(config.weight(), now);
        }
        if (rxOn && !rx.needsBuffers()) {
            work += rx.process(config.weight(), now);
        }
        if (work > 0) {
            if (idle) {
                // An idle gap ended: would a short spin have caught this work without sleeping?
                shortGaps = (shortGaps << 1 | (now - lastRealWork < adaptiveSpinNanos ? 1 : 0)) & 0xff;
                idle = false;
            }
            lastWork = now;
            lastRealWork = now;
            return;
        }
        idle = true;
        counters.increment(Counter.EMPTY_POLLS);
        long spin = shortGaps != 0 ? Math.max(busyPollNanos, adaptiveSpinNanos) : busyPollNanos;
        if (spin > 0 && now - lastWork < spin) {
            rx.kicked(); // polling: look at the RX ring again without waiting for a kick
            Thread.onSpinWait();
            return;
        }
        // About to sleep: ask for kicks and re-check (no lost wake-up).
        if (txOn && !tx.backpressured() && tx.armNotify()) {
            return;
        }
        if (rxOn && rx.needsBuffers() && rx.armNotify()) {
            return;
        }
        sleep(txOn, rxOn);
        lastWork = System.nanoTime();
    }

    /**
     * Guest memory faulted under this pair (the front-end shrank a region it passed): both rings are
     * marked broken ({@link VirtqError#MEMORY_FAULT}: logged, error eventfds signalled, counted) and
     * stay so until the front-end restarts them (a new ring start resets the queue). Nothing here
     * touches guest memory. The process, other pairs and other devices carry on.
     */
    private void memoryFault(Throwable e) {
        counters.increment(Counter.MEMORY_FAULTS);
        String what = e.getMessage() != null ? e.getMessage() : e.getClass().getName();
        String msg = "guest memory access faulted (" + what + "): the front-end shrank or unmapped memory it passed"
                + " (ftruncate of an unsealed memfd / hugetlbfs file?)";
        boolean any = false;
        for (int role = RX; role <= TX; role++) {
            SplitVirtqueue q = queue(role);
            if (started[role] && !q.isBroken()) {
                q.markBroken(VirtqError.MEMORY_FAULT, msg);
                any = true;
            }
        }
        if (any) {
            LOG.log(System.Logger.Level.ERROR, "{0}: {1}; queue pair stopped until the front-end restarts its rings",
                    name, msg);
        } else {
            LOG.log(System.Logger.Level.DEBUG, "{0}: another guest memory fault ({1})", name, what);
        }
    }

    private void sleep(boolean txOn, boolean rxOn) {
        int interest = (rxOn && !rx.needsBuffers() ? Epoll.EPOLLIN : 0) | (txOn && tx.backpressured() ? Epoll.EPOLLOUT : 0);
        if (interest != tapInterest) {
            Epoll.modify(ep, tapFd, interest, TAG_TAP);
            tapInterest = interest;
        }
        boolean polled = (txOn && kickFd[TX] < 0) || (rxOn && kickFd[RX] < 0);
        int n = Epoll.wait(ep, events, MAX_EVENTS, polled ? POLL_INTERVAL_MS : -1);
        counters.increment(Counter.WAKEUPS);
        for (int i = 0; i < n; i++) {
            long tag = Epoll.data(events, i);
            int ev = Epoll.events(events, i);
            if (tag == TAG_TX_KICK) {
                EventFd.drain(kickFd[TX]);
                counters.increment(Counter.TX_KICKS);
            } else if (tag == TAG_RX_KICK) {
                EventFd.drain(kickFd[RX]);
                counters.increment(Counter.RX_KICKS);
                rx.kicked();
            } else if (tag == TAG_TAP) {
                if ((ev & (Epoll.EPOLLOUT | Epoll.EPOLLERR | Epoll.EPOLLHUP)) != 0) {
                    tx.writable();
                }
            } else {
                EventFd.drain(cmdFd);
            }
        }
        if (polled) {
            rx.kicked(); // no kick will come: look at the ring again
        }
    }

    private int drainCommands() {
        int n = 0;
        Command c;
        while (n < COMMANDS_PER_CYCLE && (c = commands.poll()) != null) {
            try {
                c.result = c.task.run(this);
            } catch (RuntimeException | Error e) {
                if (MemoryFault.is(e)) {
                    // A command that touched a ring (start, stop, TX flush) found the memory gone; the
                    // fault may also be the JVM's asynchronous report of an access the cycle made.
                    memoryFault(e);
                }
                c.error = e;
            }
            c.done.countDown();
            n++;
        }
        return n;
    }

    /** Stops the thread (after resetting the rings) and frees its resources. Control thread. */
    @Override
    public void close() {
        if (alive) {
            try {
                call(w -> {
                    w.reset();
                    w.running = false;
                    return 0;
                });
                thread.join(config.ackTimeoutMs());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (IllegalStateException e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: {1}; the worker is stuck (jstack shows where);"
                        + " its resources stay allocated until the process exits", name, e.getMessage());
            }
        }
        if (!thread.isAlive()) {
            Fds.closeQuietly(cmdFd);
            Fds.closeQuietly(ep);
            if (ring != null) {
                ring.close();
            }
            if (rxRing != null) {
                rxRing.close();
            }
            arena.close();
        }
    }

    private static final class Command {
        final Task task;
        final CountDownLatch done = new CountDownLatch(1);
        int result;
        Throwable error;

        Command(Task task) {
            this.task = task;
        }
    }
}
