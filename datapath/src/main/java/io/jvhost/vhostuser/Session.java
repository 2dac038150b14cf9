package io.jvhost.vhostuser;

import static io.jvhost.vhostuser.VhostUserMessage.*;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Fds;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtio.DeviceStatus;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.jfr.JvhostEvents;

import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/**
 * One vhost-user connection (QEMU's docs/interop/vhost-user.rst) for a virtio-net device: the
 * message envelope and a dispatch table with one {@link Request} row per request. The state lives
 * in its own classes: the memory table in {@link MemoryTables}, the vrings in {@link RingTable},
 * the config space in {@link ConfigSpace}; feature negotiation is here.
 *
 * <h2>Errors</h2>
 * Every request is validated completely before anything is applied (the row's payload size, fd
 * count and protocol feature first, then the handler's checks). A rejected request is answered
 * with a non-zero REPLY_ACK when the front-end negotiated REPLY_ACK (before this message) and set
 * NEED_REPLY; otherwise the session ends with a log line saying why. A request that has a reply of
 * its own never gets a second one. Fds that came with a message and were not kept are closed.
 *
 * <h2>Logging</h2>
 * Session start and end at INFO, every rejected request as one WARNING line naming it and the reason,
 * everything per message at DEBUG.
 *
 * <h2>Threading</h2>
 * Confined to the device's control thread: {@link #handleOne()} and {@link #close()} are called by
 * that thread only, and all {@link DeviceBackend} calls happen from there.
 */
public final class Session implements AutoCloseable {

    /** What GET_MAX_MEM_SLOTS answers and the most regions the table may hold. */
    public static final int MAX_MEM_SLOTS = GuestMemory.MAX_REGIONS;
    /** A message that has started must arrive completely within this time. */
    public static final int MESSAGE_TIMEOUT_MS = 5000;

    private static final System.Logger LOG = System.getLogger(Session.class.getName());

    private static final int[] EMPTY = {0};
    private static final int[] U64 = {U64_SIZE};
    private static final int[] STATE = {STATE_SIZE};

    private final String name;
    private final int socketFd;
    private final VhostUserCodec codec;
    private final DeviceBackend backend;
    private final long offeredFeatures;
    private final long offeredProtocol;
    private final MemoryTables memory;
    private final RingTable rings;
    private final ConfigSpace config;
    private final DirtyLogs logs;
    /** Dispatch table indexed by request code; null entries are unsupported requests. */
    private final Request[] table;

    private long ackedFeatures;
    private long ackedProtocol;
    /** The virtio device status the driver last set (SET_STATUS), 0 after a reset. */
    private long status;
    private boolean owner;
    private long messages;
    private boolean closed;

    /** What follows a session's end, for the operator reading the warning. */
    private static final String AFTER_CLOSE = "the device was reset and waits for a new session (QEMU reconnects"
            + " with reconnect= on its chardev; jvhost --client reconnects by itself)";

    /**
     * @param name     device name for log lines
     * @param socketFd connected socket; the session owns it and closes it in {@link #close()}
     * @param backend  the device (shared by successive sessions of one device, never by two at once)
     * @param offer    features to offer (masked with what the backend supports)
     */
    public Session(String name, int socketFd, DeviceBackend backend, FeatureSet offer) {
        this.name = name;
        this.socketFd = socketFd;
        this.codec = new VhostUserCodec(socketFd);
        this.backend = backend;
        long virtio = backend.features() & offer.virtio();
        if (offer.protocolFeatures()) {
            virtio |= 1L << VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES;
        } else {
            virtio &= ~(1L << VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES);
        }
        this.offeredFeatures = virtio;
        this.offeredProtocol = offer.protocolFeatures() ? offer.protocol() & PROTOCOL_SUPPORTED : 0;
        // A front-end that stops reading its replies must not wedge the control thread in send():
        // non-blocking, the codec waits at most its send timeout and then ends the session.
        Fds.setNonBlocking(socketFd, true);
        this.memory = new MemoryTables(name);
        this.logs = new DirtyLogs(name);
        this.rings = new RingTable(name, 2 * backend.maxQueuePairs(), backend, memory::current, () -> ackedFeatures,
                logs::current);
        this.config = new ConfigSpace(name, backend);
        this.table = buildTable();
        JvhostEvents.sessionConnected(name);
    }

    // ------------------------------------------------------------------ the dispatch table

    private static Request row(int code, int[] sizes, int fds, int feature, Request.Handler h) {
        return new Request(code, sizes, fds, fds, feature, Request.Reply.NEVER, h);
    }

    private static Request row(int code, int[] sizes, int minFds, int maxFds, int feature, Request.Handler h) {
        return new Request(code, sizes, minFds, maxFds, feature, Request.Reply.NEVER, h);
    }

    private static Request reply(int code, int[] sizes, int maxFds, int feature, Request.Handler h) {
        return new Request(code, sizes, 0, maxFds, feature, Request.Reply.ALWAYS, h);
    }

    private Request[] buildTable() {
        int none = Request.NO_FEATURE;
        List<Request> rows = List.of(
                reply(GET_FEATURES, EMPTY, 0, none, () -> codec.replyU64(offeredFeatures)),
                row(SET_FEATURES, U64, 0, none, this::setFeatures),
                reply(GET_PROTOCOL_FEATURES, EMPTY, 0, none, this::getProtocolFeatures),
                row(SET_PROTOCOL_FEATURES, U64, 0, none, this::setProtocolFeatures),
                row(SET_OWNER, EMPTY, 0, none, () -> owner = true),
                // Deprecated; the spec recommends "ignore or disable all rings". Disabling keeps state intact.
                row(RESET_OWNER, EMPTY, 0, none, () -> rings.setAllEnabled(false)),
                row(SET_MEM_TABLE, null, 0, MEM_MAX_REGIONS, none, this::setMemTable),
                // With LOG_SHMFD the front-end waits for a reply of SET_LOG_BASE's own (QEMU
                // vhost_user_set_log_base); the kernel-era form (one u64, no fd) has none.
                new Request(SET_LOG_BASE, new int[] {LOG_SIZE, U64_SIZE}, 0, 1, none,
                        Request.Reply.whenNegotiated(PROTOCOL_F_LOG_SHMFD), this::setLogBase),
                row(SET_LOG_FD, EMPTY, 0, 1, none, this::setLogFd),
                reply(GET_MAX_MEM_SLOTS, EMPTY, 0, PROTOCOL_F_CONFIGURE_MEM_SLOTS, () -> codec.replyU64(MAX_MEM_SLOTS)),
                row(ADD_MEM_REG, new int[] {SINGLE_REGION_SIZE}, 1, PROTOCOL_F_CONFIGURE_MEM_SLOTS, this::addMemReg),
                // the spec tolerates one (unused) fd for compatibility; it is closed with the message
                row(REM_MEM_REG, new int[] {SINGLE_REGION_SIZE}, 0, 1, PROTOCOL_F_CONFIGURE_MEM_SLOTS, this::remMemReg),
                row(SET_VRING_NUM, STATE, 0, none, () -> rings.setSize(codec)),
                row(SET_VRING_ADDR, new int[] {ADDR_SIZE}, 0, none, this::setVringAddr),
                row(SET_VRING_BASE, STATE, 0, none, () -> rings.setBase(codec)),
                reply(GET_VRING_BASE, STATE, 0, none, () -> rings.getBase(codec)),
                row(SET_VRING_KICK, U64, 0, 1, none, () -> rings.setKick(codec)),
                row(SET_VRING_CALL, U64, 0, 1, none, () -> rings.setCall(codec)),
                row(SET_VRING_ERR, U64, 0, 1, none, () -> rings.setErr(codec)),
                reply(GET_QUEUE_NUM, EMPTY, 0, PROTOCOL_F_MQ, () -> codec.replyU64(rings.count() / 2)),
                row(SET_VRING_ENABLE, STATE, 0, none, () -> rings.setEnabled(codec)),
                row(SEND_RARP, U64, 0, PROTOCOL_F_RARP, this::sendRarp),
                row(NET_SET_MTU, U64, 0, PROTOCOL_F_MTU, this::setMtu),
                // GET_CONFIG answers a bad request with an empty payload: it checks everything itself
                reply(GET_CONFIG, null, MAX_FDS, none,
                        () -> config.get(codec, (offeredProtocol & (1L << PROTOCOL_F_CONFIG)) != 0)),
                row(SET_CONFIG, null, 0, PROTOCOL_F_CONFIG, () -> config.set(codec)),
                row(RESET_DEVICE, EMPTY, 0, PROTOCOL_F_RESET_DEVICE, this::resetDevice),
                row(SET_STATUS, U64, 0, PROTOCOL_F_STATUS, this::setStatus),
                reply(GET_STATUS, EMPTY, 0, PROTOCOL_F_STATUS, () -> codec.replyU64(status)));
        int max = 0;
        for (Request r : rows) {
            max = Math.max(max, r.code());
        }
        Request[] t = new Request[max + 1];
        for (Request r : rows) {
            if (t[r.code()] != null) {
                throw new IllegalStateException("two rows for " + r.name());
            }
            t[r.code()] = r;
        }
        return t;
    }

    private Request rowFor(int code) {
        return code >= 0 && code < table.length ? table[code] : null;
    }

    // ------------------------------------------------------------------ the envelope

    public int socketFd() {
        return socketFd;
    }

    public long offeredFeatures() {
        return offeredFeatures;
    }

    public long offeredProtocolFeatures() {
        return offeredProtocol;
    }

    public long ackedFeatures() {
        return ackedFeatures;
    }

    public long ackedProtocolFeatures() {
        return ackedProtocol;
    }

    public long messages() {
        return messages;
    }

    private boolean replyAck() {
        return (ackedProtocol & (1L << PROTOCOL_F_REPLY_ACK)) != 0;
    }

    /**
     * Reads and handles one message; call when the socket is readable.
     *
     * @return false when the session is over (peer gone or a fatal error; already logged)
     */
    public boolean handleOne() {
        if (closed) {
            return false;
        }
        try {
            if (codec.read(MESSAGE_TIMEOUT_MS) == VhostUserCodec.ReadResult.EOF) {
                LOG.log(Level.INFO, "{0}: front-end disconnected after {1} messages", name, messages);
                return false;
            }
        } catch (VhostUserCodec.StreamException e) {
            LOG.log(Level.WARNING, "{0}: closing session: {1}; {2}", name, e.getMessage(), AFTER_CLOSE);
            return false;
        }
        messages++;
        int req = codec.request();
        Request row = rowFor(req);
        // Whether this request gets a REPLY_ACK status is decided by the state before it: a
        // SET_PROTOCOL_FEATURES that turns REPLY_ACK on is not itself acknowledged (QEMU, DPDK
        // virtio-user and rust-vmm front-ends all decide NEED_REPLY from what was negotiated before).
        boolean replies = row != null ? row.reply().replies(ackedProtocol) : hasReply(req);
        boolean ack = codec.needReply() && replyAck() && !replies;
        try {
            if ((codec.flags() & FLAGS_VERSION_MASK) != VERSION) {
                throw new ProtocolException("unsupported protocol version " + (codec.flags() & FLAGS_VERSION_MASK));
            }
            if (codec.fdOverflow()) {
                throw new ProtocolException("more than " + MAX_FDS + " fds attached");
            }
            LOG.log(Level.DEBUG, "{0}: {1} size={2} fds={3}", name, requestName(req), codec.size(), codec.fdCount());
            dispatch(row);
            if (ack) {
                codec.replyU64(0);
            }
            return true;
        } catch (ProtocolException e) {
            return reject(req, e.getMessage(), ack);
        } catch (IllegalArgumentException e) {
            // the device refused a value the session already validated: same treatment as a bad request
            return reject(req, "device refused: " + e.getMessage(), ack);
        } catch (VhostUserCodec.StreamException e) {
            LOG.log(Level.WARNING, "{0}: closing session: {1}; {2}", name, e.getMessage(), AFTER_CLOSE);
            return false;
        } catch (RuntimeException | Error e) {
            if (MemoryFault.is(e)) {
                // The device touched guest memory that vanished under its mapping (the front-end shrank a
                // region it passed): the affected queue pair is already marked broken; end this session.
                LOG.log(Level.WARNING, "{0}: closing session: {1} faulted on guest memory ({2}): the front-end"
                        + " shrank or unmapped memory it passed; restart the VM's device (reboot or QEMU restart), and"
                        + " give it sealed memfd memory to prevent this", name, requestName(req), rootMessage(e));
                return false;
            }
            if (e instanceof Error err) {
                throw err;
            }
            LOG.log(Level.ERROR, name + ": closing session: " + requestName(req) + " failed", e);
            return false;
        } finally {
            codec.closeFds();
        }
    }

    private void dispatch(Request row) throws ProtocolException, VhostUserCodec.StreamException {
        if (row == null) {
            throw new ProtocolException("unsupported request");
        }
        if (row.feature() != Request.NO_FEATURE && (offeredProtocol & (1L << row.feature())) == 0) {
            throw new ProtocolException("protocol feature " + row.feature() + " needed for " + row.name()
                    + " is not offered");
        }
        String bad = row.check(codec.size(), codec.fdCount());
        if (bad != null) {
            throw new ProtocolException(bad);
        }
        row.handler().handle();
    }

    private static String rootMessage(Throwable e) {
        Throwable c = e;
        while (c.getCause() != null && c.getCause() != c) {
            c = c.getCause();
        }
        return c.getMessage() != null ? c.getMessage() : c.getClass().getName();
    }

    private boolean reject(int req, String why, boolean ack) {
        if (ack) {
            LOG.log(Level.WARNING, "{0}: {1} rejected: {2}; the front-end was told (REPLY_ACK) and goes on;"
                    + " if the guest then lacks networking, check the front-end's version and options", name,
                    requestName(req), why);
            try {
                codec.replyU64(1);
                return true;
            } catch (VhostUserCodec.StreamException e) {
                LOG.log(Level.WARNING, "{0}: closing session: {1}; {2}", name, e.getMessage(), AFTER_CLOSE);
                return false;
            }
        }
        LOG.log(Level.WARNING, "{0}: closing session: {1} rejected: {2}; the front-end sent what jvhost cannot"
                + " accept: check its version and options (--disable-features switches off what it misuses); {3}",
                name, requestName(req), why, AFTER_CLOSE);
        return false;
    }

    // ------------------------------------------------------------------ features

    private void requireProtocolFeaturesOffered(int req) throws ProtocolException {
        if (!VirtioFeatures.has(offeredFeatures, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES)) {
            throw new ProtocolException(requestName(req) + " needs VHOST_USER_F_PROTOCOL_FEATURES, not offered");
        }
    }

    private void getProtocolFeatures() throws ProtocolException, VhostUserCodec.StreamException {
        requireProtocolFeaturesOffered(GET_PROTOCOL_FEATURES);
        codec.replyU64(offeredProtocol);
    }

    private void setFeatures() throws ProtocolException {
        long f = codec.payloadLong(0);
        long extra = f & ~offeredFeatures;
        if (extra != 0) {
            throw new ProtocolException("acknowledges features not offered: " + VirtioFeatures.describe(extra));
        }
        long logBit = VirtioFeatures.bit(VirtioFeatures.F_LOG_ALL);
        long deviceChange = (f ^ ackedFeatures) & ~logBit;
        if (deviceChange != 0 && rings.anyStarted()) {
            // QEMU re-sends identical features (once per queue pair's vhost_dev) while other rings run;
            // a real change while rings run (DPDK's vhost refuses it too) would leave running rings on a
            // ring layout (EVENT_IDX) and header size they did not start with. LOG_ALL alone is how
            // migration switches logging on and off under running rings: that is allowed.
            throw new ProtocolException("features change while rings run (0x" + Long.toHexString(ackedFeatures)
                    + " -> 0x" + Long.toHexString(f) + "); stop them with GET_VRING_BASE first");
        }
        boolean logAll = (f & logBit) != 0;
        boolean wasLogAll = (ackedFeatures & logBit) != 0;
        if (logAll) {
            String bad = DirtyLogs.uncovered(logs.current(), memory.current());
            if (bad != null) {
                throw new ProtocolException("LOG_ALL: " + bad);
            }
        }
        if (deviceChange != 0 || logAll == wasLogAll) {
            backend.onFeaturesSet(f & ~logBit);
        }
        if (logAll != wasLogAll) {
            backend.setDirtyLog(logs.current(), logAll);
            JvhostEvents.dirtyLog(name, logAll, logs.current() != null ? logs.current().pages() / Byte.SIZE : 0);
            if (logAll && logs.current() == null) {
                LOG.log(Level.WARNING, "{0}: LOG_ALL without a dirty log (no SET_LOG_BASE yet): the rings wait,"
                        + " writing nothing to guest memory, until a log arrives", name);
            } else {
                LOG.log(Level.INFO, "{0}: dirty logging {1}", name, logAll ? "on (" + logs.current() + ")" : "off");
            }
        }
        ackedFeatures = f;
        JvhostEvents.featuresNegotiated(name, f);
        LOG.log(Level.DEBUG, "{0}: features {1}", name, VirtioFeatures.describe(f));
        if (!VirtioFeatures.has(f, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES)) {
            // vhost-user.rst, "Ring states": SET_FEATURES without PROTOCOL_FEATURES enables all rings.
            rings.setAllEnabled(true);
        }
    }

    private boolean logAll() {
        return VirtioFeatures.has(ackedFeatures, VirtioFeatures.F_LOG_ALL);
    }

    private void setProtocolFeatures() throws ProtocolException {
        requireProtocolFeaturesOffered(SET_PROTOCOL_FEATURES);
        long f = codec.payloadLong(0);
        long extra = f & ~offeredProtocol;
        if (extra != 0) {
            throw new ProtocolException("acknowledges protocol features not offered: 0x" + Long.toHexString(extra));
        }
        ackedProtocol = f;
    }

    // ------------------------------------------------------------------ memory

    private void setMemTable() throws ProtocolException {
        install(memory.replaced(codec));
    }

    private void addMemReg() throws ProtocolException {
        GuestMemory next = memory.added(codec);
        if (next != null) {
            install(next);
        }
    }

    private void remMemReg() throws ProtocolException {
        GuestMemory next = memory.removed(codec);
        if (next != null) {
            install(next);
        }
    }

    /**
     * Hands {@code next} to the device, then retires the old table. Running rings that {@code next}
     * does not cover are stopped first; afterwards every ring that can run (again) is started. If
     * the device refuses, {@code next}'s own new mappings are unmapped and the paused rings restart
     * on the old table.
     */
    private void install(GuestMemory next) throws ProtocolException {
        String uncovered = logAll() ? DirtyLogs.uncovered(logs.current(), next) : null;
        if (uncovered != null) {
            memory.abandon(next);
            throw new ProtocolException("memory table refused while logging: " + uncovered
                    + " (send a larger SET_LOG_BASE first)");
        }
        rings.pauseUncovered(next);
        try {
            backend.onMemoryTable(next);
        } catch (RuntimeException e) {
            memory.abandon(next);
            rings.startPending();
            throw e;
        }
        memory.commit(next);
        rings.startPending();
    }

    /**
     * SET_LOG_BASE. With LOG_SHMFD negotiated: maps the log fd (validated: size, offset, the fd's
     * size and its F_SEAL_SHRINK, coverage of guest memory and of every logging ring), hands it to the
     * device — every worker acknowledges — then unmaps the previous log and replies (an empty reply,
     * as DPDK's back-end sends; QEMU checks only the request code). A refused log ends the session:
     * the front-end waits for this reply and has no way to hear a refusal.
     * Without LOG_SHMFD the message is the kernel-era form (an address in the front-end's own
     * process, unusable here) and changes nothing.
     */
    private void setLogBase() throws ProtocolException, VhostUserCodec.StreamException {
        if ((ackedProtocol & (1L << PROTOCOL_F_LOG_SHMFD)) == 0) {
            LOG.log(Level.DEBUG, "{0}: SET_LOG_BASE without LOG_SHMFD ignored", name);
            return;
        }
        if (codec.size() != LOG_SIZE) {
            throw new ProtocolException("payload size " + codec.size() + ", expected " + LOG_SIZE + " with LOG_SHMFD");
        }
        if (codec.fdCount() != 1) {
            throw new ProtocolException(codec.fdCount() + " fds attached, expected the log fd");
        }
        DirtyLog next = logs.mapped(codec.fdAt(0), codec.payloadLong(LOG_MMAP_SIZE_OFFSET),
                codec.payloadLong(LOG_MMAP_OFFSET_OFFSET), memory.current());
        String bad = rings.logUncovered(next);
        if (bad != null) {
            logs.abandon(next);
            throw new ProtocolException(bad);
        }
        try {
            backend.setDirtyLog(next, logAll());
        } catch (RuntimeException e) {
            logs.abandon(next);
            throw e;
        }
        boolean wasHeld = logAll() && logs.current() == null;
        logs.commit(next);
        if (logAll()) {
            JvhostEvents.dirtyLog(name, true, next.pages() / Byte.SIZE);
        }
        LOG.log(Level.INFO, "{0}: dirty log {1}{2}", name, next, wasHeld ? " (rings resume)" : "");
        codec.reply(0);
    }

    /** SET_LOG_FD: the eventfd to tell the front-end the log changed; kept, not signalled (QEMU reads the log at each sync). */
    private void setLogFd() {
        if (codec.fdCount() == 1) {
            logs.setLogFd(codec.takeFd(0));
        }
        LOG.log(Level.DEBUG, "{0}: SET_LOG_FD", name);
    }

    /**
     * SET_STATUS: records the driver's device status for GET_STATUS. It drives nothing: rings start
     * and stop with the ring messages, and a reset comes as RESET_DEVICE or a disconnect. QEMU 7.2
     * writes 0 when it stops the device and keeps the memory table and features for the next start,
     * so status 0 must not reset anything.
     */
    private void setStatus() throws ProtocolException {
        long s = codec.payloadLong(0);
        if ((s & ~(long) DeviceStatus.MASK) != 0) {
            throw new ProtocolException("device status 0x" + Long.toHexString(s) + " has bits beyond the status byte");
        }
        status = s;
        LOG.log(Level.DEBUG, "{0}: device status 0x{1}", name, Long.toHexString(s));
    }

    // ------------------------------------------------------------------ rings

    // ------------------------------------------------------------------ rings

    private void setVringAddr() throws ProtocolException {
        rings.setAddresses(codec, VirtioFeatures.has(offeredFeatures, VirtioFeatures.F_LOG_ALL));
    }

    // ------------------------------------------------------------------ net

    private void sendRarp() throws ProtocolException {
        byte[] mac = new byte[VirtioNetConfig.MAC_LENGTH];
        MemorySegment.copy(codec.payload(), ValueLayout.JAVA_BYTE, 0, mac, 0, mac.length);
        if (!backend.sendRarp(mac)) {
            throw new ProtocolException("device cannot send RARP");
        }
    }

    private void setMtu() throws ProtocolException {
        long mtu = codec.payloadLong(0);
        String bad = VirtioNetConfig.checkMtu(mtu);
        if (bad != null) {
            throw new ProtocolException(bad);
        }
        if (!backend.setMtu((int) mtu)) {
            throw new ProtocolException("device refused MTU " + mtu);
        }
    }

    // ------------------------------------------------------------------ reset / close

    private void resetDevice() {
        LOG.log(Level.DEBUG, "{0}: RESET_DEVICE", name);
        resetDeviceState();
    }

    /** RESET_DEVICE: back to the state after SET_OWNER (ownership and protocol features stay). */
    private void resetDeviceState() {
        rings.stopAll();
        try {
            backend.reset();
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": device reset failed", e);
        }
        rings.clear();
        memory.close();
        logs.close();
        ackedFeatures = 0;
        status = 0;
    }

    /** Ends the session: stops rings, resets the device, unmaps memory, closes every fd including the socket. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        resetDeviceState();
        codec.close();
        VhostUserCodec.closeQuietly(socketFd);
        JvhostEvents.sessionDisconnected(name, messages);
    }

    /** For tests and logs: whether ring {@code q} is running. */
    public boolean ringStarted(int q) {
        return rings.started(q);
    }

    public boolean owner() {
        return owner;
    }

    public String name() {
        return name;
    }
}
