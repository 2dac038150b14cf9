package io.jvhost.engine;

import io.jvhost.config.Configuration;
import io.jvhost.jfr.JvhostEvents;
import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.IoUring;
import io.jvhost.nativ.NativeException;
import io.jvhost.net.PacketCapture;
import io.jvhost.net.RxEngine;
import io.jvhost.net.TapIo;
import io.jvhost.net.TxEngine;
import io.jvhost.net.TxValidator;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.RingJournal;
import io.jvhost.virtq.RingSetup;
import io.jvhost.virtq.RingState;
import io.jvhost.virtq.VirtqError;
import io.jvhost.virtq.Vring;

import java.lang.foreign.Arena;

/**
 * One queue pair as a worker runs it: the RX and TX {@link Vring}s (the only owners of their ring
 * state), the engines that serve them, the pair's tap queue fd, counters and latency histograms.
 * A {@link Worker} calls {@link #doWork} every duty cycle and, when the cycle found nothing to do,
 * {@link #prepareToSleep}; the {@code on…} methods apply control commands (they arrive through
 * {@link QueuePairProxy}).
 *
 * <p>Threading: confined to its worker's thread, except {@link #counters()}, {@link #latency()} and
 * {@link #brokenReason(int)} / {@link #brokenMessage(int)}, which any thread may read.
 */
public final class QueuePair {
    private static final System.Logger LOG = System.getLogger(QueuePair.class.getName());

    /** Role of the even vring of a pair (virtio-net: receiveq). */
    public static final int RX = 0;
    /** Role of the odd vring of a pair (transmitq). */
    public static final int TX = 1;

    static final int KIND_TX_KICK = 1;
    static final int KIND_RX_KICK = 2;
    static final int KIND_TAP = 3;

    private final String name;
    private final int index;
    private final int tapFd;
    private final int weight;
    private final Arena arena = Arena.ofShared();
    private final QueueCounters counters = new QueueCounters();
    private final QueueLatency latency;
    private final Vring rxRing;
    private final Vring txRing;
    private final TxEngine tx;
    private final RxEngine rx;
    /** The TX engine's io_uring ({@link TapIo#URING}), else null. */
    private final IoUring txUring;
    /** The RX engine's io_uring for batched single-buffer reads ({@link RxEngine#BATCH}), else null. */
    private final IoUring rxUring;

    private GuestMemory memory = GuestMemory.empty();
    /**
     * The front-end asked for every write to be logged (LOG_ALL) but has not given a log yet
     * (QEMU starting a device during a migration sends SET_LOG_BASE after the rings): the rings
     * wait, untouched, until the log arrives — an unlogged write would reach the destination stale.
     */
    private boolean logHeld;
    // epoll registration in the worker that runs this pair (-1: none)
    private int ep = -1;
    private long tagBase;
    private final int[] registeredKick = {-1, -1};
    private int tapInterest = -1;
    /**
     * RX found the tap empty: it is read again once epoll reports it readable (or the guest kicks),
     * not every cycle — an idle pair on a busy worker then costs no system call per cycle, and the
     * worker learns about all its dry taps from one non-blocking epoll_wait.
     */
    private boolean tapDry;
    /** Empty duty cycles in a row ({@link #maybePark}). */
    private int emptyCycles;
    /** Not polled: notifications and tap interest armed, an epoll event for it ends this. */
    private boolean parked;
    private boolean closed;

    /**
     * @param device   device name, for logs
     * @param tapFd    the pair's tap queue fd (non-blocking, owned by the caller)
     * @param weight   frames per ring per duty cycle
     * @param ringSize largest ring size the device accepts (sizes the RX window)
     */
    public QueuePair(String device, int index, int tapFd, int weight, int ringSize) {
        this.name = device + " q" + index;
        this.index = index;
        this.latency = new QueueLatency(device, index, Configuration.SLOW_BATCH_NANOS.get());
        this.tapFd = tapFd;
        this.weight = weight;
        this.rxRing = new Vring(device + " rx" + index);
        this.txRing = new Vring(device + " tx" + index);
        rxRing.setBrokenListener(() -> broken(device, RX));
        txRing.setBrokenListener(() -> broken(device, TX));
        this.tx = new TxEngine(index, txRing, arena, counters, latency);
        this.rx = new RxEngine(index, rxRing, arena, counters, latency, ringSize);
        this.txUring = openUring(name, Math.max(8, Math.min(weight, 64)));
        tx.useRing(txUring, arena);
        this.rxUring = txUring != null && RxEngine.BATCH ? openUring(name, RxEngine.RING_BATCH) : null;
        rx.useRing(rxUring);
        onSetFeatures(0, 1500);
    }

    /**
     * Keeps the used positions of the pair's packed rings in {@code journal} (slots 2 &times; index
     * for RX, 2 &times; index + 1 for TX: the virtqueue indexes). Before the pair is first started.
     */
    public void useJournal(RingJournal journal) {
        rxRing.setJournal(journal.slot(2 * index));
        txRing.setJournal(journal.slot(2 * index + 1));
    }

    private static IoUring openUring(String name, int entries) {
        if (TapIo.effective() != TapIo.URING) {
            return null;
        }
        try {
            return IoUring.create(entries);
        } catch (NativeException e) {
            LOG.log(System.Logger.Level.WARNING, "{0}: io_uring setup failed ({1}); one system call per frame"
                    + " (lower throughput): raise the memlock limit (LimitMEMLOCK=infinity, ulimit -l) or set"
                    + " --tap-io=syscalls to accept it",
                    name, e.getMessage());
            return null;
        }
    }

    public String name() {
        return name;
    }

    public int index() {
        return index;
    }

    /** Counters: written by the worker, readable from any thread. */
    public QueueCounters counters() {
        return counters;
    }

    /** Histograms: recorded by the worker, readable from any thread. */
    public QueueLatency latency() {
        return latency;
    }

    /** Whether TX goes through io_uring (the {@link TapIo} property and the kernel allowed it). */
    public boolean usesUring() {
        return txUring != null;
    }

    Vring ring(int role) {
        return role == TX ? txRing : rxRing;
    }

    /** The state of ring {@code role}. Any thread (volatile reads). */
    public RingState ringState(int role) {
        return ring(role).state();
    }

    /** Ring {@code role} was marked broken (worker thread): counted and recorded. */
    private void broken(String device, int role) {
        counters.increment(role == TX ? Counter.TX_RING_BROKEN : Counter.RX_RING_BROKEN);
        Vring r = ring(role);
        JvhostEvents.ringBroken(device, index, role == TX ? JvhostEvents.TX : JvhostEvents.RX, r.brokenReason(), r.brokenMessage());
    }

    /** Why ring {@code role} is broken, or null. Any thread. */
    public VirtqError brokenReason(int role) {
        return ring(role).brokenReason();
    }

    /** The detail logged when ring {@code role} broke, or null. Any thread. */
    public String brokenMessage(int role) {
        return ring(role).brokenMessage();
    }

    // ------------------------------------------------------------------ commands (worker thread)

    /** Starts ring {@code role} on the current memory table. */
    void onStartRing(int role, RingSetup setup) {
        tapDry = false;
        Vring r = ring(role);
        if (r.started()) {
            onStopRing(role);
        }
        try {
            r.start(setup, memory);
        } finally {
            registerKick(role);
        }
    }

    /** Stops ring {@code role} and returns the base the next start must use. */
    int onStopRing(int role) {
        Vring r = ring(role);
        if (!r.started()) {
            return r.queue().base();
        }
        releaseHeld(role);
        int base = r.stop();
        registerKick(role);
        return base;
    }

    boolean ringStarted(int role) {
        return ring(role).started();
    }

    void onSetRingEnabled(int role, boolean on) {
        tapDry = false;
        Vring r = ring(role);
        if (role == TX && !on && r.enabled() && txOn()) {
            flushTx();
        }
        if (role == RX && !on) {
            rx.releaseWindow();
        }
        r.setEnabled(on);
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
        int left = txRing.queue().size();
        while (left > 0 && !tx.backpressured()) {
            int n = tx.process(Math.min(left, weight), System.nanoTime());
            if (n == 0) {
                break;
            }
            left -= n;
        }
    }

    void onSetCallFd(int role, int fd) {
        ring(role).setCallFd(fd);
    }

    void onSetErrFd(int role, int fd) {
        ring(role).setErrFd(fd);
    }

    /**
     * Switches to a new memory table; when this returns the pair no longer uses the old one.
     *
     * @return false when a running ring is not inside the new table (it is then broken)
     */
    boolean onSetMemory(GuestMemory table) {
        // Held chains point into the old mappings: give them back, they are re-taken via the new table.
        tx.releasePending();
        rx.releaseWindow();
        tapDry = false;
        memory = table;
        boolean ok = txRing.queue().setMemory(table);
        return rxRing.queue().setMemory(table) && ok;
    }

    /** New negotiated features and MTU: header size, validation and RX geometry. */
    void onSetFeatures(long features, int mtu) {
        int hdrSize = VirtioNetHdr.size(features);
        tx.configure(tapFd, hdrSize, new TxValidator(features, mtu));
        rx.configure(tapFd, hdrSize, VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF),
                VirtioFeatures.guestGso(features), mtu);
    }

    /**
     * Dirty logging: {@code logAll} with a {@code log} logs every write to guest memory from now
     * on; {@code logAll} without one holds both rings (nothing is processed, nothing in flight)
     * until a log arrives; without {@code logAll} nothing is logged. When this returns the pair no
     * longer uses the previous log.
     */
    void onSetDirtyLog(DirtyLog log, boolean logAll) {
        boolean hold = logAll && log == null;
        if (hold && !logHeld) {
            // Nothing may stay in flight: giving chains back later writes the used ring, unlogged.
            tx.releasePending();
            rx.releaseWindow();
        }
        logHeld = hold;
        DirtyLog effective = logAll ? log : null;
        rxRing.setDirtyLog(effective);
        txRing.setDirtyLog(effective);
    }

    /** Whether the rings wait for a dirty log (LOG_ALL without one). */
    boolean logHeld() {
        return logHeld;
    }

    void onSetCapture(PacketCapture capture) {
        tx.setCapture(capture);
        rx.setCapture(capture);
    }

    /**
     * Stops both rings and clears broken state. A ring whose stop faults on guest memory (the
     * front-end shrank it) is forgotten anyway, so the pair is always clean for the next session.
     */
    void onReset() {
        Throwable failure = null;
        for (int role = TX; role >= RX; role--) {
            try {
                onStopRing(role);
            } catch (RuntimeException | Error e) {
                if (!MemoryFault.is(e) && failure == null) {
                    failure = e;
                }
                forgetRing(role);
            }
        }
        txRing.reset();
        rxRing.reset();
        tapDry = false;
        memory = GuestMemory.empty();
        logHeld = false;
        if (failure instanceof RuntimeException re) {
            throw re;
        }
        if (failure instanceof Error er) {
            throw er;
        }
    }

    /** {@link #onStopRing} without touching guest memory: after a failed stop. */
    private void forgetRing(int role) {
        ring(role).forget();
        try {
            registerKick(role);
        } catch (RuntimeException ignored) {
            // the fd is going away with the session anyway
        }
        try {
            releaseHeld(role);
        } catch (RuntimeException | Error ignored) {
            // a release that faults again: the rings are reset right after
        }
    }

    private void releaseHeld(int role) {
        if (role == TX) {
            tx.releasePending();
        } else {
            rx.releaseWindow();
        }
    }

    /**
     * Guest memory faulted under this pair (the front-end shrank a region it passed): both rings are
     * marked broken ({@link VirtqError#MEMORY_FAULT}: logged, error eventfds signalled, counted) and
     * stay so until the front-end restarts them (a new ring start resets the queue). Nothing here
     * touches guest memory. The process, other pairs and other devices carry on.
     */
    void onMemoryFault(Throwable e) {
        counters.increment(Counter.MEMORY_FAULTS);
        String what = e.getMessage() != null ? e.getMessage() : e.getClass().getName();
        String msg = "guest memory access faulted (" + what + "): the front-end shrank or unmapped memory it passed"
                + " (ftruncate of an unsealed memfd / hugetlbfs file?)";
        boolean any = false;
        for (int role = RX; role <= TX; role++) {
            Vring r = ring(role);
            if (r.started() && !r.queue().isBroken()) {
                r.queue().markBroken(VirtqError.MEMORY_FAULT, msg);
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

    // ------------------------------------------------------------------ duty cycle (worker thread)

    private boolean txOn() {
        return txRing.active() && !logHeld;
    }

    private boolean rxOn() {
        return rxRing.active() && rxRing.enabled() && !logHeld;
    }

    /** One TX and one RX batch, each bounded by the weight. Returns frames handled. */
    int doWork(long now) {
        int work = 0;
        if (txOn() && !tx.backpressured()) {
            work += tx.process(weight, now);
        }
        if (rxOn() && !rx.needsBuffers() && !tapDry) {
            int n = rx.process(weight, now);
            work += n;
            if (n == 0 && !rx.needsBuffers()) {
                tapDry = true;
                armTap();
            }
        }
        return work;
    }

    /**
     * On a worker serving several pairs: after {@code after} empty cycles in a row the pair is parked —
     * its guest notifications and tap interest armed as before a sleep ({@link #prepareToSleep}) — and
     * the worker stops polling it until an epoll event for it (a kick, the tap) or a command (vhost-net
     * polls only kicked queues; DPDK's PMD polls every queue, so with many idle devices a busy one
     * would pay for all of them on every cycle). A pair whose rings have no kick fd is never parked.
     *
     * @param work what the pair did this cycle
     * @return true when the pair is parked now
     */
    boolean maybePark(int work, int after) {
        if (work > 0) {
            emptyCycles = 0;
            return false;
        }
        if (++emptyCycles < after || polled()) {
            return false;
        }
        emptyCycles = 0;
        if (prepareToSleep()) {
            return false; // work arrived while arming
        }
        parked = true;
        return true;
    }

    boolean parked() {
        return parked;
    }

    /** Polled again from the next cycle on (an event or a command concerns it). */
    void unpark() {
        parked = false;
        emptyCycles = 0;
    }

    /** The worker keeps polling instead of sleeping: look at the RX ring again without a kick. */
    void polling() {
        rx.kicked();
    }

    /**
     * Before the worker sleeps: asks the guest for kicks and re-checks the rings (no lost wake-up).
     *
     * @return true when work arrived meanwhile (do not sleep)
     */
    boolean prepareToSleep() {
        if (txOn() && !tx.backpressured() && tx.armNotify()) {
            return true;
        }
        if (rxOn() && rx.needsBuffers() && rx.armNotify()) {
            return true;
        }
        armTap();
        return false;
    }

    /** Tap interest: EPOLLIN only while the guest has RX buffers, EPOLLOUT only while TX is backpressured. */
    private void armTap() {
        int interest = (rxOn() && !rx.needsBuffers() ? Epoll.EPOLLIN : 0)
                | (txOn() && tx.backpressured() ? Epoll.EPOLLOUT : 0);
        if (interest != tapInterest && ep >= 0) {
            Epoll.modify(ep, tapFd, interest, tagBase | KIND_TAP);
            tapInterest = interest;
        }
    }

    /**
     * TX waits for the tap to take frames again (EAGAIN), or RX for it to have frames again (it was
     * found empty). Then, while other work keeps the worker from sleeping, {@link #armTapWait} and a
     * non-blocking look at the epoll set tell it when to go on.
     */
    boolean waitsForTap() {
        return (txOn() && tx.backpressured()) || (tapDry && rxOn() && !rx.needsBuffers());
    }

    /** Asks for EPOLLOUT / EPOLLIN on the tap as {@link #waitsForTap} needs them. */
    void armTapWait() {
        armTap();
    }

    /** A running ring without a kick fd: the worker must wake up periodically. */
    boolean polled() {
        return (txOn() && txRing.kickFd() < 0) || (rxOn() && rxRing.kickFd() < 0);
    }

    /** After a sleep that had to poll ({@link #polled()}): no kick will come, look at the ring again. */
    void polledWake() {
        rx.kicked();
        tapDry = false;
    }

    /** An epoll event with one of this pair's tags. */
    void onEvent(int kind, int events) {
        unpark();
        switch (kind) {
            case KIND_TX_KICK -> {
                EventFd.drain(txRing.kickFd());
                counters.increment(Counter.TX_KICKS);
            }
            case KIND_RX_KICK -> {
                EventFd.drain(rxRing.kickFd());
                counters.increment(Counter.RX_KICKS);
                rx.kicked();
                tapDry = false;
            }
            default -> {
                if ((events & (Epoll.EPOLLIN | Epoll.EPOLLERR | Epoll.EPOLLHUP)) != 0) {
                    tapDry = false;
                }
                if ((events & (Epoll.EPOLLOUT | Epoll.EPOLLERR | Epoll.EPOLLHUP)) != 0) {
                    tx.writable();
                }
            }
        }
    }

    // ------------------------------------------------------------------ epoll registration

    /** Registers the tap and kick fds in worker epoll {@code epollFd} with tags {@code tagBase | kind}. */
    void attach(int epollFd, long tags) {
        this.ep = epollFd;
        this.tagBase = tags;
        Epoll.add(ep, tapFd, 0, tagBase | KIND_TAP);
        tapInterest = 0;
        registerKick(RX);
        registerKick(TX);
    }

    /** Removes this pair's fds from its worker's epoll. */
    void detach() {
        if (ep < 0) {
            return;
        }
        for (int role = RX; role <= TX; role++) {
            unregisterKick(role);
        }
        try {
            Epoll.remove(ep, tapFd);
        } catch (RuntimeException ignored) {
            // tap already closed
        }
        ep = -1;
        tapInterest = -1;
    }

    private void registerKick(int role) {
        if (ep < 0) {
            return;
        }
        // always remove and add again: a closed kick fd's number may come back as a new eventfd
        unregisterKick(role);
        int fd = ring(role).kickFd();
        if (fd >= 0) {
            Epoll.add(ep, fd, Epoll.EPOLLIN, tagBase | (role == TX ? KIND_TX_KICK : KIND_RX_KICK));
            registeredKick[role] = fd;
        }
    }

    private void unregisterKick(int role) {
        int fd = registeredKick[role];
        registeredKick[role] = -1;
        if (fd >= 0 && ep >= 0) {
            try {
                Epoll.remove(ep, fd);
            } catch (RuntimeException e) {
                // already closed by the front-end: epoll dropped it itself
            }
        }
    }

    /** Frees the pair's io_urings and native memory (once); after its worker stopped running it. */
    void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (txUring != null) {
            txUring.close();
        }
        if (rxUring != null) {
            rxUring.close();
        }
        arena.close();
    }
}
