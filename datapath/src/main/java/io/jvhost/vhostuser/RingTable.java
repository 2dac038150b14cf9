package io.jvhost.vhostuser;

import static io.jvhost.vhostuser.VhostUserMessage.*;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtq.RingLayout;
import io.jvhost.virtq.RingSetup;
import io.jvhost.jfr.JvhostEvents;

import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * What the protocol knows about each vring and its state machine (vhost-user.rst, "Ring states"):
 * stopped → started (disabled | enabled) → stopped by GET_VRING_BASE.
 *
 * <p>A ring starts when it has a size, addresses, a memory table that covers them and a kick (an
 * eventfd, or VHOST_USER_VRING_NOFD_MASK meaning "poll"). Enabling is separate: every ring begins
 * disabled, SET_VRING_ENABLE sets the state, and a SET_FEATURES without
 * VHOST_USER_F_PROTOCOL_FEATURES enables all rings. GET_VRING_BASE stops the ring, closes its kick
 * fd and answers the base the next start uses. A new memory table that no longer covers a running
 * ring stops that ring first ({@link #pauseUncovered}; its kick is kept) and it restarts, at the same
 * base, as soon as a table covers it again ({@link #startPending}): QEMU removes and re-adds regions
 * when its memory map changes, and the device never sees a table that does not cover a running ring.
 *
 * <p>Sizes, bases, alignment and area sizes are those of the negotiated ring format
 * ({@link RingLayout}). The running state itself belongs to the device's worker; this table keeps
 * only what the protocol needs to answer, and the fds it owns (closed when replaced or at reset).
 *
 * <p>Threading: the session's control thread.
 */
final class RingTable {
    private static final System.Logger LOG = System.getLogger(RingTable.class.getName());

    /** One vring as the front-end configured it. */
    private static final class Entry {
        int size;
        boolean addrSet;
        long desc;
        long driver;
        long device;
        long log;
        int addrFlags;
        int base;
        boolean kickSet;
        int kickFd = -1;
        int callFd = -1;
        int errFd = -1;
        boolean enabled;
        boolean started;
    }

    private final String name;
    private final DeviceBackend backend;
    private final Supplier<GuestMemory> memory;
    private final LongSupplier features;
    private final Supplier<DirtyLog> dirtyLog;
    private final Entry[] rings;

    /**
     * @param memory   the session's current memory table (null until the first)
     * @param features the negotiated virtio features (decide the ring format)
     * @param dirtyLog the session's dirty log (null while none)
     */
    RingTable(String name, int count, DeviceBackend backend, Supplier<GuestMemory> memory, LongSupplier features,
              Supplier<DirtyLog> dirtyLog) {
        this.name = name;
        this.backend = backend;
        this.memory = memory;
        this.features = features;
        this.dirtyLog = dirtyLog;
        this.rings = new Entry[count];
        for (int i = 0; i < count; i++) {
            rings[i] = new Entry();
        }
    }

    int count() {
        return rings.length;
    }

    /** Validates a vring index from a message. */
    int index(long raw) throws ProtocolException {
        if (raw < 0 || raw >= rings.length) {
            throw new ProtocolException("vring index " + Long.toUnsignedString(raw) + " out of range [0, " + rings.length
                    + ")");
        }
        return (int) raw;
    }

    private RingLayout layout() {
        return RingLayout.of(features.getAsLong());
    }

    boolean started(int q) {
        return rings[q].started;
    }

    boolean anyStarted() {
        for (Entry r : rings) {
            if (r.started) {
                return true;
            }
        }
        return false;
    }

    private void requireStopped(int q) throws ProtocolException {
        if (rings[q].started) {
            throw new ProtocolException("ring " + q + " is running; stop it with GET_VRING_BASE first");
        }
    }

    // ------------------------------------------------------------------ messages (payload decoding)

    private int stateIndex(VhostUserCodec codec) throws ProtocolException {
        return index(Integer.toUnsignedLong(codec.payloadInt(STATE_INDEX_OFFSET)));
    }

    /** SET_VRING_NUM. */
    void setSize(VhostUserCodec codec) throws ProtocolException {
        setSize(stateIndex(codec), codec.payloadInt(STATE_NUM_OFFSET));
    }

    /** SET_VRING_BASE. */
    void setBase(VhostUserCodec codec) throws ProtocolException {
        setBase(stateIndex(codec), codec.payloadInt(STATE_NUM_OFFSET));
    }

    /** GET_VRING_BASE: stops the ring and replies with its base. */
    void getBase(VhostUserCodec codec) throws ProtocolException, VhostUserCodec.StreamException {
        int q = stateIndex(codec);
        int base = getBase(q);
        MemorySegment p = codec.txPayload();
        p.set(U32, STATE_INDEX_OFFSET, q);
        p.set(U32, STATE_NUM_OFFSET, base);
        codec.reply(STATE_SIZE);
    }

    /** SET_VRING_ENABLE. */
    void setEnabled(VhostUserCodec codec) throws ProtocolException {
        int q = stateIndex(codec);
        int num = codec.payloadInt(STATE_NUM_OFFSET);
        if (num != 0 && num != 1) {
            throw new ProtocolException("enable value " + Integer.toUnsignedString(num) + " is not 0 or 1");
        }
        setEnabled(q, num == 1);
    }

    /** SET_VRING_ADDR. */
    void setAddresses(VhostUserCodec codec, boolean logSupported) throws ProtocolException {
        int q = index(Integer.toUnsignedLong(codec.payloadInt(ADDR_INDEX_OFFSET)));
        setAddresses(q, codec.payloadInt(ADDR_FLAGS_OFFSET), codec.payloadLong(ADDR_DESC_OFFSET),
                codec.payloadLong(ADDR_AVAIL_OFFSET), codec.payloadLong(ADDR_USED_OFFSET),
                codec.payloadLong(ADDR_LOG_OFFSET), logSupported);
    }

    /**
     * The vring index of a SET_VRING_KICK / CALL / ERR payload, after checking that an fd came with
     * it exactly when the NOFD flag is clear.
     */
    private int vringFdIndex(VhostUserCodec codec) throws ProtocolException {
        long u = codec.payloadLong(0);
        if ((u & ~(VRING_IDX_MASK | VRING_NOFD_MASK)) != 0) {
            throw new ProtocolException("unknown bits in 0x" + Long.toHexString(u));
        }
        int q = index(u & VRING_IDX_MASK);
        boolean nofd = (u & VRING_NOFD_MASK) != 0;
        int wantFds = nofd ? 0 : 1;
        if (codec.fdCount() != wantFds) {
            throw new ProtocolException(codec.fdCount() + " fds attached, expected " + wantFds
                    + (nofd ? " (NOFD flag set)" : ""));
        }
        return q;
    }

    /** SET_VRING_KICK: the table takes the message's fd. */
    void setKick(VhostUserCodec codec) throws ProtocolException {
        int q = vringFdIndex(codec);
        setKick(q, codec.fdCount() == 0 ? -1 : codec.takeFd(0));
    }

    /**
     * SET_VRING_CALL: the device gets the fd first; only once it accepted does the table own it (a
     * refusal leaves the old fd in place and the new one closes with the message).
     */
    void setCall(VhostUserCodec codec) throws ProtocolException {
        int q = vringFdIndex(codec);
        boolean fd = codec.fdCount() == 1;
        setCall(q, fd ? codec.fdAt(0) : -1);
        if (fd) {
            codec.takeFd(0);
        }
    }

    /** SET_VRING_ERR, as {@link #setCall(VhostUserCodec)}. */
    void setErr(VhostUserCodec codec) throws ProtocolException {
        int q = vringFdIndex(codec);
        boolean fd = codec.fdCount() == 1;
        setErr(q, fd ? codec.fdAt(0) : -1);
        if (fd) {
            codec.takeFd(0);
        }
    }

    // ------------------------------------------------------------------ messages (state)

    private void setSize(int q, int num) throws ProtocolException {
        String bad = layout().checkSize(num);
        if (bad != null) {
            throw new ProtocolException("ring " + q + ": " + layout() + " " + bad);
        }
        requireStopped(q);
        rings[q].size = num;
    }

    private void setBase(int q, int num) throws ProtocolException {
        Entry r = rings[q];
        String bad = layout().checkBase(num, r.size > 0 ? r.size : RingLayout.MAX_SIZE);
        if (bad != null) {
            throw new ProtocolException("ring " + q + ": " + bad);
        }
        requireStopped(q);
        r.base = num;
    }

    /** Stops the ring, drops its kick and returns the base the next start uses. */
    private int getBase(int q) {
        Entry r = rings[q];
        stop(q);
        // The ring needs a new kick (fd or NOFD) before it starts again.
        VhostUserCodec.closeQuietly(r.kickFd);
        r.kickFd = -1;
        r.kickSet = false;
        LOG.log(Level.DEBUG, "{0}: ring {1} stopped at {2}", name, q, r.base);
        return r.base;
    }

    /**
     * SET_VRING_ADDR. QEMU re-sends addresses on a running ring (e.g. when it switches logging):
     * the ring stops, takes them and starts again.
     *
     * @param logSupported whether dirty logging is on offer (VHOST_VRING_F_LOG allowed)
     */
    private void setAddresses(int q, int flags, long desc, long driver, long device, long log, boolean logSupported)
            throws ProtocolException {
        if ((flags & ~VhostUserMessage.VRING_F_LOG) != 0) {
            throw new ProtocolException("ring " + q + ": unknown address flags 0x" + Integer.toHexString(flags));
        }
        if ((flags & VhostUserMessage.VRING_F_LOG) != 0 && !logSupported) {
            throw new ProtocolException("ring " + q + ": flags 0x" + Integer.toHexString(flags)
                    + " (dirty logging is not offered)");
        }
        String misaligned = layout().checkAlignment(desc, driver, device);
        if (misaligned != null) {
            throw new ProtocolException("ring " + q + ": misaligned ring address: " + misaligned);
        }
        Entry r = rings[q];
        if ((flags & VhostUserMessage.VRING_F_LOG) != 0) {
            String bad = checkLogAddress(q, log, r.size, dirtyLog.get());
            if (bad != null) {
                throw new ProtocolException(bad);
            }
        }
        if (memory.get() != null && r.size > 0) {
            checkMapped(q, memory.get(), r.size, desc, driver, device);
        }
        if (r.started) {
            stop(q);
        }
        r.desc = desc;
        r.driver = driver;
        r.device = device;
        r.log = log;
        r.addrFlags = flags;
        r.addrSet = true;
        maybeStart(q);
    }

    /** A new kick: {@code fd} (owned by the table from now on) or -1 for "poll". */
    private void setKick(int q, int fd) throws ProtocolException {
        Entry r = rings[q];
        if (memory.get() != null && r.size > 0 && r.addrSet) {
            checkMapped(q, memory.get(), r.size, r.desc, r.driver, r.device);
        }
        stop(q); // a new kick fd on a running ring: restart with it
        VhostUserCodec.closeQuietly(r.kickFd);
        r.kickFd = fd;
        r.kickSet = true;
        maybeStart(q);
    }

    /** A new call fd: the device gets it first; if it refuses (throws) the old fd stays. */
    private void setCall(int q, int fd) {
        Entry r = rings[q];
        if (r.started) {
            backend.setCallFd(q, fd);
        }
        VhostUserCodec.closeQuietly(r.callFd);
        r.callFd = fd;
    }

    private void setErr(int q, int fd) {
        Entry r = rings[q];
        if (r.started) {
            backend.setErrFd(q, fd);
        }
        VhostUserCodec.closeQuietly(r.errFd);
        r.errFd = fd;
    }

    /** SET_VRING_ENABLE (and the implicit enable of SET_FEATURES without PROTOCOL_FEATURES). */
    void setEnabled(int q, boolean on) {
        Entry r = rings[q];
        boolean was = r.enabled;
        r.enabled = on;
        if (r.started && was != on) {
            backend.setRingEnabled(q, on);
        }
    }

    void setAllEnabled(boolean on) {
        for (int q = 0; q < rings.length; q++) {
            setEnabled(q, on);
        }
    }

    // ------------------------------------------------------------------ start / stop

    private void stop(int q) {
        Entry r = rings[q];
        if (r.started) {
            r.started = false;
            r.base = backend.stopRing(q);
            JvhostEvents.ringStopped(name, q, r.base);
        }
    }

    private boolean canStart(Entry r) {
        return !r.started && r.kickSet && r.addrSet && r.size > 0 && memory.get() != null;
    }

    private void maybeStart(int q) throws ProtocolException {
        Entry r = rings[q];
        if (!canStart(r)) {
            return;
        }
        long f = features.getAsLong();
        RingLayout layout = RingLayout.of(f);
        String bad = layout.checkSize(r.size);
        if (bad == null) {
            bad = layout.checkBase(r.base, r.size);
        }
        if (bad == null) {
            bad = layout.checkAlignment(r.desc, r.driver, r.device);
        }
        if (bad != null) {
            throw new ProtocolException("ring " + q + " cannot start as a " + layout + " ring: " + bad);
        }
        checkMapped(q, memory.get(), r.size, r.desc, r.driver, r.device);
        if ((r.addrFlags & VhostUserMessage.VRING_F_LOG) != 0) {
            String badLog = checkLogAddress(q, r.log, r.size, dirtyLog.get());
            if (badLog != null) {
                throw new ProtocolException(badLog);
            }
        }
        backend.startRing(q, new RingSetup(r.size, r.desc, r.driver, r.device, r.base, f,
                (r.addrFlags & VhostUserMessage.VRING_F_LOG) != 0, r.log, r.kickFd, r.callFd, r.errFd, r.enabled));
        r.started = true;
        JvhostEvents.ringStarted(name, q, r.size, r.base, r.enabled);
        LOG.log(Level.DEBUG, "{0}: ring {1} started (size {2}, base {3}, {4}, {5}, {6})", name, q, r.size, r.base,
                r.kickFd < 0 ? "polled" : "kicked", r.enabled ? "enabled" : "disabled", layout);
    }

    /**
     * Before {@code next} replaces the memory table: stops running rings it does not cover (the
     * device must never translate a running ring against a table without it).
     */
    void pauseUncovered(GuestMemory next) {
        for (int q = 0; q < rings.length; q++) {
            Entry r = rings[q];
            if (r.started && !mapped(next, r.size, r.desc, r.driver, r.device)) {
                stop(q);
                LOG.log(Level.DEBUG, "{0}: ring {1} paused at {2}: not covered by the new memory table", name, q,
                        r.base);
            }
        }
    }

    /** After a memory table change: rings that waited for memory start now (if the table covers them). */
    void startPending() {
        GuestMemory m = memory.get();
        for (int q = 0; q < rings.length; q++) {
            Entry r = rings[q];
            if (canStart(r) && mapped(m, r.size, r.desc, r.driver, r.device)) {
                try {
                    maybeStart(q);
                } catch (ProtocolException | IllegalArgumentException e) {
                    LOG.log(Level.WARNING, "{0}: ring {1} stays stopped: {2}; its queue is silent until the"
                            + " front-end sets the ring up again", name, q, e.getMessage());
                }
            } else if (canStart(r)) {
                LOG.log(Level.DEBUG, "{0}: ring {1} waits for a memory table that covers it", name, q);
            }
        }
    }

    /** Stops every running ring (device reset); a failure is logged, the others still stop. */
    void stopAll() {
        for (int q = 0; q < rings.length; q++) {
            try {
                stop(q);
            } catch (RuntimeException e) {
                LOG.log(Level.ERROR, name + ": stopping ring " + q + " failed", e);
            }
        }
    }

    /** Forgets every ring and closes its fds (after {@link #stopAll} and the device reset). */
    void clear() {
        for (int q = 0; q < rings.length; q++) {
            Entry r = rings[q];
            VhostUserCodec.closeQuietly(r.kickFd);
            VhostUserCodec.closeQuietly(r.callFd);
            VhostUserCodec.closeQuietly(r.errFd);
            rings[q] = new Entry();
        }
    }

    // ------------------------------------------------------------------ dirty logging

    /**
     * Null when ring {@code q}'s used-ring log address is acceptable, else why not. The spec lets
     * {@code log_guest_addr} lie outside the memory table, "but the bit offset of the last byte of
     * the ring must fall within the size supplied by VhostUserLog" (vhost-user.rst, "Migration"): so
     * the device area must not wrap, and must lie inside the log when there is one (else it is
     * checked when the log arrives, {@link #logUncovered}). The device never writes outside the log
     * whatever this says ({@link DirtyLog#mark} checks every page); this makes the error visible.
     */
    private String checkLogAddress(int q, long logAddr, int size, DirtyLog log) {
        long len = size > 0 ? layout().deviceBytes(size) : 1;
        if (Long.compareUnsigned(logAddr + len - 1, logAddr) < 0) {
            return "ring " + q + ": log address 0x" + Long.toHexString(logAddr) + " + " + len + " bytes wraps";
        }
        if (log != null && size > 0 && !log.covers(logAddr, len)) {
            return "ring " + q + ": log address 0x" + Long.toHexString(logAddr) + " (" + len
                    + "-byte device area) lies outside the dirty log (" + log.pages() + " pages)";
        }
        return null;
    }

    /** Null when {@code log} covers the log address of every started ring that logs its used ring, else why not. */
    String logUncovered(DirtyLog log) {
        for (int q = 0; q < rings.length; q++) {
            Entry r = rings[q];
            if (r.started && (r.addrFlags & VhostUserMessage.VRING_F_LOG) != 0) {
                String bad = checkLogAddress(q, r.log, r.size, log);
                if (bad != null) {
                    return bad;
                }
            }
        }
        return null;
    }

    // ------------------------------------------------------------------ coverage

    private void checkMapped(int q, GuestMemory m, int size, long desc, long driver, long device)
            throws ProtocolException {
        RingLayout l = layout();
        if (!userRangeMapped(m, desc, l.descBytes(size))) {
            throw new ProtocolException("ring " + q + ": descriptor area 0x" + Long.toHexString(desc)
                    + " is not inside the memory table");
        }
        if (!userRangeMapped(m, driver, l.driverBytes(size))) {
            throw new ProtocolException("ring " + q + ": driver area 0x" + Long.toHexString(driver)
                    + " is not inside the memory table");
        }
        if (!userRangeMapped(m, device, l.deviceBytes(size))) {
            throw new ProtocolException("ring " + q + ": device area 0x" + Long.toHexString(device)
                    + " is not inside the memory table");
        }
    }

    /**
     * Whether all three areas lie inside {@code m}, each within one region. Sizes are the ring
     * format's own (split: avail and used always with their 2-byte event trailer, as the device
     * maps them whatever EVENT_IDX says), so a ring the session accepts is one the device can translate.
     */
    private boolean mapped(GuestMemory m, int size, long desc, long driver, long device) {
        RingLayout l = layout();
        return userRangeMapped(m, desc, l.descBytes(size)) && userRangeMapped(m, driver, l.driverBytes(size))
                && userRangeMapped(m, device, l.deviceBytes(size));
    }

    private static boolean userRangeMapped(GuestMemory m, long addr, long len) {
        return m != null && m.uvaToHost(addr, len) != GuestMemory.NO_ADDR;
    }
}
