package io.jvhost.virtq;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.EventFd;

/**
 * One virtqueue as its worker owns it: the queue of the negotiated format and its notification
 * file descriptors (kick, call, err) with the enabled / started state — the single owner of ring
 * state on the worker side (rust-vmm's {@code VringState} is the shape). The TX and RX engines are
 * given a {@code Vring} and read everything from it; nothing else keeps copies.
 *
 * <p>The queue object is chosen at each {@link #start} from the negotiated features (split or
 * packed), so the same {@code Vring} serves successive sessions with different formats.
 *
 * <p>Threading: confined to the owning worker (or to the control thread while no worker runs it),
 * except {@link #brokenReason()} / {@link #brokenMessage()}, readable from any thread.
 */
public final class Vring {
    private static final System.Logger LOG = System.getLogger(Vring.class.getName());

    /** {@link #notifyUsed()}: the driver was called. */
    public static final int CALLED = 1;
    /** {@link #notifyUsed()}: the driver did not want a call (EVENT_IDX / flags). */
    public static final int SUPPRESSED = 0;
    /** {@link #notifyUsed()}: the driver wanted a call but there is no call fd. */
    public static final int NO_CALL_FD = -1;

    private final String name;
    private final SplitVirtqueue split;
    private final PackedVirtqueue packed;
    /** Volatile: the engines read it on the worker, {@link #brokenReason()} from any thread. */
    private volatile DeviceQueue queue;
    private int kickFd = -1;
    private int callFd = -1;
    private int errFd = -1;
    private boolean enabled = true;
    private boolean started;
    /** The device's dirty log while migrating, else null; outlives starts and stops of the ring. */
    private DirtyLog dirtyLog;
    /** From the last start: VHOST_VRING_F_LOG and the ring's log address. */
    private boolean logRing;
    private long logGuestAddr;
    /** {@link RingState} ordinal as of the last transition, for readers on other threads. */
    private volatile int published = RingState.STOPPED.ordinal();
    private Runnable brokenListener;

    /** @param name used in log lines, e.g. "vhost0 rx0" */
    public Vring(String name) {
        this.name = name;
        this.split = new SplitVirtqueue(name);
        split.setBrokenHandler(q -> broken());
        this.packed = new PackedVirtqueue(name);
        packed.setBrokenHandler(q -> broken());
        this.queue = split;
    }

    public String name() {
        return name;
    }

    /**
     * Where a packed ring writes down its used position for a back-end restarted after this one
     * died ({@link RingJournal}); null: nowhere. Set before the ring is first started.
     */
    public void setJournal(RingJournal.Slot slot) {
        packed.setJournal(slot);
    }

    /** The queue of the current (or last) start's format. */
    public DeviceQueue queue() {
        return queue;
    }

    public boolean started() {
        return started;
    }

    public boolean enabled() {
        return enabled;
    }

    public int kickFd() {
        return kickFd;
    }

    public int callFd() {
        return callFd;
    }

    public int errFd() {
        return errFd;
    }

    /**
     * The ring's state as of its last start, stop, enable or disable — broken as soon as it breaks.
     * Any thread (volatile reads; never disturbs the worker): metrics.
     */
    public RingState state() {
        if (queue.isBroken()) {
            return RingState.BROKEN;
        }
        return RingState.of(published);
    }

    private void publish() {
        published = (!started ? RingState.STOPPED : enabled ? RingState.ENABLED : RingState.DISABLED).ordinal();
    }

    /**
     * Runs {@code listener} on the owning worker each time the ring is marked broken, after the error
     * eventfd was signalled (the queue pair counts it and records a JFR event there). Set once, before
     * the ring is used.
     */
    public void setBrokenListener(Runnable listener) {
        this.brokenListener = listener;
    }

    /** Started, and not broken. */
    public boolean active() {
        return started && !queue.isBroken();
    }

    /**
     * Starts the ring on {@code memory}. The fds stay owned by the caller (the session); the ring
     * only uses them until {@link #stop} or the next change.
     *
     * @throws IllegalArgumentException when the format is not supported or the areas are not
     *                                  inside {@code memory} (the queue is then broken too)
     */
    public void start(RingSetup s, GuestMemory memory) {
        DeviceQueue q = queueFor(s.layout());
        q.reset();
        q.setSize(s.size());
        q.setFeatures(s.features());
        q.setMemory(memory);
        queue = q;
        if (!q.setAddresses(s.desc(), s.driver(), s.device())) {
            throw new IllegalArgumentException(name + ": ring areas outside guest memory");
        }
        q.setBase(s.base());
        logRing = s.logUsed();
        logGuestAddr = s.logGuestAddr();
        q.setDirtyLog(dirtyLog, logRing, logGuestAddr);
        q.start();
        started = true;
        enabled = s.enabled();
        kickFd = s.kickFd();
        callFd = s.callFd();
        errFd = s.errFd();
        publish();
    }

    private DeviceQueue queueFor(RingLayout layout) {
        return layout == RingLayout.PACKED ? packed : split;
    }

    /**
     * Stops the ring and returns the base the next start resumes from. Chains in flight must have
     * been given back first ({@link DeviceQueue#returnInFlight}: the engines do it, they know what
     * they hold).
     */
    public int stop() {
        int base = queue.stop();
        started = false;
        kickFd = -1;
        callFd = -1;
        errFd = -1;
        publish();
        return base;
    }

    /** Forgets the ring after a stop that failed (guest memory gone): nothing touches the rings. */
    public void forget() {
        started = false;
        kickFd = -1;
        callFd = -1;
        errFd = -1;
        publish();
    }

    /** Clears a broken state, forgets the rings and stops logging (device reset). */
    public void reset() {
        forget();
        queue.reset();
        dirtyLog = null;
        logRing = false;
    }

    /**
     * The log every device write to guest memory through this ring is marked in (null: not
     * logging). The queue logs its own ring writes when the ring was started with
     * VHOST_VRING_F_LOG; the engines log the buffers they fill ({@link #dirtyLog()}).
     */
    public void setDirtyLog(DirtyLog log) {
        this.dirtyLog = log;
        queue.setDirtyLog(log, logRing, logGuestAddr);
    }

    /** The dirty log, or null when not logging. Worker thread; read once per batch by the engines. */
    public DirtyLog dirtyLog() {
        return dirtyLog;
    }

    public void setEnabled(boolean on) {
        this.enabled = on;
        publish();
    }

    /**
     * A new call eventfd. On a running ring the new fd is signalled once: QEMU
     * (vhost_virtqueue_start) sends SET_VRING_CALL only after SET_VRING_KICK has started the ring,
     * so after a pause ({@code stop}/{@code cont}) or a driver reload the ring runs for a moment with
     * the previous call fd, which nobody reads any more. A call made in that window is lost, and
     * with EVENT_IDX no later call comes until the driver moves {@code used_event}, which it does
     * only when it is called: with per-queue MSI-X vectors that queue would stall. One spurious
     * interrupt is harmless (the driver just looks at its used ring); libvhost-user does the same.
     */
    public void setCallFd(int fd) {
        callFd = fd;
        if (started && fd >= 0) {
            try {
                EventFd.signal(fd);
            } catch (RuntimeException e) {
                // not an eventfd, or a full one: the courtesy call is skipped, the fd is still used
                LOG.log(System.Logger.Level.DEBUG, "{0}: signalling the new call fd failed: {1}", name, e.getMessage());
            }
        }
    }

    public void setErrFd(int fd) {
        errFd = fd;
    }

    /**
     * After a batch was published: calls the driver when it wants a call.
     *
     * @return {@link #CALLED}, {@link #SUPPRESSED} or {@link #NO_CALL_FD}
     */
    public int notifyUsed() {
        if (!queue.needsCall()) {
            return SUPPRESSED;
        }
        int fd = callFd;
        if (fd < 0) {
            return NO_CALL_FD;
        }
        EventFd.signal(fd);
        return CALLED;
    }

    private void broken() {
        int fd = errFd;
        if (fd >= 0) {
            EventFd.signal(fd);
        }
        Runnable l = brokenListener;
        if (l != null) {
            l.run();
        }
    }

    /** Why the ring is broken, or null. Any thread. */
    public VirtqError brokenReason() {
        return queue.brokenReason();
    }

    /** The detail logged when the ring broke, or null. Any thread. */
    public String brokenMessage() {
        return queue.brokenMessage();
    }
}
