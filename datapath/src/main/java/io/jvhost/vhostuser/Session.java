package io.jvhost.vhostuser;

import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.vhostuser.VhostUserMessage.*;

import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryFault;
import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.Fds;
import io.jvhost.stats.jfr.JvhostEvents;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;

/**
 * One vhost-user connection: the back-end state machine of QEMU's docs/interop/vhost-user.rst for
 * a virtio-net device. Feature negotiation, memory table (SET_MEM_TABLE and ADD/REM_MEM_REG), ring
 * setup and the ring state machine (stopped → started (disabled | enabled) → stopped by
 * GET_VRING_BASE), config space, RARP, MTU, resets.
 *
 * <h2>Ring rules</h2>
 * A ring starts when it has a size, addresses, a memory table that covers them and a kick (an
 * eventfd, or VHOST_USER_VRING_NOFD_MASK meaning "poll"). Enabling is separate (vhost-user.rst,
 * "Ring states"): every ring begins disabled, SET_VRING_ENABLE sets the state, and a SET_FEATURES
 * without VHOST_USER_F_PROTOCOL_FEATURES enables all rings. GET_VRING_BASE stops the ring, closes
 * its kick fd and answers the index the next start uses. A new memory table that no longer covers a
 * running ring stops that ring first (its kick is kept) and it restarts, at the same index, as soon
 * as a table covers it again: QEMU removes and re-adds regions (REM_MEM_REG then ADD_MEM_REG) when
 * its memory map changes, and the device never sees a table that does not cover a running ring.
 *
 * <h2>Errors</h2>
 * Every request is validated completely before anything is applied. A rejected request is answered
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

    /** What GET_MAX_MEM_SLOTS answers and the most regions the table may hold (QEMU uses up to 509). */
    public static final int MAX_MEM_SLOTS = 509;
    /** Largest split ring (virtio 1.x: queue size ≤ 32768). */
    public static final int MAX_RING_SIZE = 32768;
    /** A message that has started must arrive completely within this time. */
    public static final int MESSAGE_TIMEOUT_MS = 5000;

    private static final System.Logger LOG = System.getLogger(Session.class.getName());

    /** SET_LOG_BASE payload: QEMU's log description (size, offset); the kernel-era form was one u64. */
    private static final int LOG_DESCRIPTION_SIZE = 16;
    /** What follows a session's end, for the operator reading the warning. */
    private static final String AFTER_CLOSE = "the device was reset and waits for a new session (QEMU reconnects"
            + " with reconnect= on its chardev; jvhost --client reconnects by itself)";
    private static final int MIN_MTU = 68;
    private static final int MAX_MTU = 65535;

    /** Per-vring state as the front-end configured it. */
    private static final class Vring {
        int size;
        boolean addrSet;
        long desc;
        long used;
        long avail;
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
    private final int socketFd;
    private final VhostUserCodec codec;
    private final DeviceBackend backend;
    private final long offeredFeatures;
    private final long offeredProtocol;
    private final Vring[] rings;

    private long ackedFeatures;
    private long ackedProtocol;
    private boolean owner;
    /** Maps region fds; the fds themselves are closed right after mapping (the mapping keeps the memory). */
    private final FdMapper mapper = new FdMapper();
    /** Current memory table, null until the first one arrives. */
    private GuestMemory memory;
    private long messages;
    private boolean closed;
    /** Unsealed regions were reported at INFO once in this session (later tables: DEBUG). */
    private boolean shrinkableLogged;

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
        int n = 2 * backend.maxQueuePairs();
        this.rings = new Vring[n];
        for (int i = 0; i < n; i++) {
            rings[i] = new Vring();
        }
        JvhostEvents.sessionConnected(name);
    }

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
        // Whether this request gets a REPLY_ACK status is decided by the state before it: a
        // SET_PROTOCOL_FEATURES that turns REPLY_ACK on is not itself acknowledged (QEMU, DPDK
        // virtio-user and rust-vmm front-ends all decide NEED_REPLY from what was negotiated before).
        boolean ack = codec.needReply() && replyAck() && !hasReply(req);
        try {
            if ((codec.flags() & FLAGS_VERSION_MASK) != VERSION) {
                throw new ProtocolException("unsupported protocol version " + (codec.flags() & FLAGS_VERSION_MASK));
            }
            if (codec.fdOverflow()) {
                throw new ProtocolException("more than " + MAX_FDS + " fds attached");
            }
            LOG.log(Level.DEBUG, "{0}: {1} size={2} fds={3}", name, requestName(req), codec.size(), codec.fdCount());
            dispatch(req);
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

    // ------------------------------------------------------------------ dispatch

    private void dispatch(int req) throws ProtocolException, VhostUserCodec.StreamException {
        switch (req) {
            case GET_FEATURES -> {
                expect(0, 0);
                codec.replyU64(offeredFeatures);
            }
            case SET_FEATURES -> setFeatures();
            case GET_PROTOCOL_FEATURES -> {
                expect(0, 0);
                requireProtocolFeaturesOffered(req);
                codec.replyU64(offeredProtocol);
            }
            case SET_PROTOCOL_FEATURES -> setProtocolFeatures();
            case SET_OWNER -> {
                expect(0, 0);
                owner = true;
            }
            case RESET_OWNER -> {
                expect(0, 0);
                // Deprecated; the spec recommends "ignore or disable all rings". Disabling keeps state intact.
                for (int q = 0; q < rings.length; q++) {
                    setEnabled(q, false);
                }
            }
            case SET_MEM_TABLE -> setMemTable();
            case SET_LOG_BASE -> {
                // Dirty logging needs F_LOG_ALL and LOG_SHMFD, neither of which is offered, so no log
                // can ever be asked for (SET_FEATURES with LOG_ALL and SET_VRING_ADDR with the log flag
                // are refused): the message changes nothing. Without LOG_SHMFD it has no reply of its
                // own; closing the session for it would be harsher than the spec's "exceptional" bar.
                if (codec.size() != LOG_DESCRIPTION_SIZE && codec.size() != U64_SIZE) {
                    throw new ProtocolException("payload size " + codec.size() + ", expected " + LOG_DESCRIPTION_SIZE);
                }
                if (codec.fdCount() > 1) {
                    throw new ProtocolException(codec.fdCount() + " fds attached, expected at most 1");
                }
                LOG.log(Level.DEBUG, "{0}: SET_LOG_BASE ignored (dirty logging not offered)", name);
            }
            case SET_LOG_FD -> {
                // The log-changed eventfd: unused without dirty logging, closed with the message.
                if (codec.size() != 0 || codec.fdCount() > 1) {
                    throw new ProtocolException("payload size " + codec.size() + " with " + codec.fdCount()
                            + " fds, expected 0 with at most 1");
                }
                LOG.log(Level.DEBUG, "{0}: SET_LOG_FD ignored (dirty logging not offered)", name);
            }
            case GET_MAX_MEM_SLOTS -> {
                expect(0, 0);
                requireProtocol(PROTOCOL_F_CONFIGURE_MEM_SLOTS, req);
                codec.replyU64(MAX_MEM_SLOTS);
            }
            case ADD_MEM_REG -> addMemReg();
            case REM_MEM_REG -> remMemReg();
            case SET_VRING_NUM -> setVringNum();
            case SET_VRING_ADDR -> setVringAddr();
            case SET_VRING_BASE -> setVringBase();
            case GET_VRING_BASE -> getVringBase();
            case SET_VRING_KICK -> setVringFd(req);
            case SET_VRING_CALL -> setVringFd(req);
            case SET_VRING_ERR -> setVringFd(req);
            case GET_QUEUE_NUM -> {
                expect(0, 0);
                requireProtocol(PROTOCOL_F_MQ, req);
                codec.replyU64(rings.length / 2);
            }
            case SET_VRING_ENABLE -> {
                expect(STATE_SIZE, 0);
                int q = ringIndex(codec.payloadInt(STATE_INDEX_OFFSET));
                int num = codec.payloadInt(STATE_NUM_OFFSET);
                if (num != 0 && num != 1) {
                    throw new ProtocolException("enable value " + Integer.toUnsignedString(num) + " is not 0 or 1");
                }
                setEnabled(q, num == 1);
            }
            case SEND_RARP -> {
                expect(U64_SIZE, 0);
                requireProtocol(PROTOCOL_F_RARP, req);
                byte[] mac = new byte[VirtioNetConfig.MAC_LENGTH];
                MemorySegment.copy(codec.payload(), ValueLayout.JAVA_BYTE, 0, mac, 0, mac.length);
                if (!backend.sendRarp(mac)) {
                    throw new ProtocolException("device cannot send RARP");
                }
            }
            case NET_SET_MTU -> {
                expect(U64_SIZE, 0);
                requireProtocol(PROTOCOL_F_MTU, req);
                long mtu = codec.payloadLong(0);
                if (mtu < MIN_MTU || mtu > MAX_MTU) {
                    throw new ProtocolException("MTU " + Long.toUnsignedString(mtu) + " outside [" + MIN_MTU + ", "
                            + MAX_MTU + "]");
                }
                if (!backend.setMtu((int) mtu)) {
                    throw new ProtocolException("device refused MTU " + mtu);
                }
            }
            case GET_CONFIG -> getConfig();
            case SET_CONFIG -> setConfig();
            case RESET_DEVICE -> {
                expect(0, 0);
                requireProtocol(PROTOCOL_F_RESET_DEVICE, req);
                LOG.log(Level.DEBUG, "{0}: RESET_DEVICE", name);
                resetDeviceState();
            }
            default -> throw new ProtocolException("unsupported request");
        }
    }

    private void expect(int size, int fds) throws ProtocolException {
        if (codec.size() != size) {
            throw new ProtocolException("payload size " + codec.size() + ", expected " + size);
        }
        if (codec.fdCount() != fds) {
            throw new ProtocolException(codec.fdCount() + " fds attached, expected " + fds);
        }
    }

    private void requireProtocolFeaturesOffered(int req) throws ProtocolException {
        if (!VirtioFeatures.has(offeredFeatures, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES)) {
            throw new ProtocolException(requestName(req) + " needs VHOST_USER_F_PROTOCOL_FEATURES, not offered");
        }
    }

    private void requireProtocol(int bit, int req) throws ProtocolException {
        if ((offeredProtocol & (1L << bit)) == 0) {
            throw new ProtocolException("protocol feature " + bit + " needed for " + requestName(req) + " is not offered");
        }
    }

    private int ringIndex(long raw) throws ProtocolException {
        if (raw < 0 || raw >= rings.length) {
            throw new ProtocolException("vring index " + Long.toUnsignedString(raw) + " out of range [0, " + rings.length
                    + ")");
        }
        return (int) raw;
    }

    private int ringIndex(int raw) throws ProtocolException {
        return ringIndex(Integer.toUnsignedLong(raw));
    }

    // ------------------------------------------------------------------ features

    private void setFeatures() throws ProtocolException {
        expect(U64_SIZE, 0);
        long f = codec.payloadLong(0);
        long extra = f & ~offeredFeatures;
        if (extra != 0) {
            throw new ProtocolException("acknowledges features not offered: " + VirtioFeatures.describe(extra));
        }
        if (f != ackedFeatures && anyRingStarted()) {
            // QEMU re-sends identical features (once per queue pair's vhost_dev) while other rings run;
            // a real change while rings run (DPDK's vhost refuses it too) would leave running rings on a
            // ring layout (EVENT_IDX) and header size they did not start with.
            throw new ProtocolException("features change while rings run (0x" + Long.toHexString(ackedFeatures)
                    + " -> 0x" + Long.toHexString(f) + "); stop them with GET_VRING_BASE first");
        }
        backend.onFeaturesSet(f);
        ackedFeatures = f;
        JvhostEvents.featuresNegotiated(name, f);
        LOG.log(Level.DEBUG, "{0}: features {1}", name, VirtioFeatures.describe(f));
        if (!VirtioFeatures.has(f, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES)) {
            // vhost-user.rst, "Ring states": SET_FEATURES without PROTOCOL_FEATURES enables all rings.
            for (int q = 0; q < rings.length; q++) {
                setEnabled(q, true);
            }
        }
    }

    private boolean anyRingStarted() {
        for (Vring r : rings) {
            if (r.started) {
                return true;
            }
        }
        return false;
    }

    private void setProtocolFeatures() throws ProtocolException {
        expect(U64_SIZE, 0);
        requireProtocolFeaturesOffered(SET_PROTOCOL_FEATURES);
        long f = codec.payloadLong(0);
        long extra = f & ~offeredProtocol;
        if (extra != 0) {
            throw new ProtocolException("acknowledges protocol features not offered: 0x" + Long.toHexString(extra));
        }
        ackedProtocol = f;
    }

    // ------------------------------------------------------------------ memory

    private MemoryRegion readRegion(int base, int fd) throws ProtocolException {
        try {
            return new MemoryRegion(codec.payloadLong(base + REGION_GPA_OFFSET),
                    codec.payloadLong(base + REGION_SIZE_OFFSET), codec.payloadLong(base + REGION_UADDR_OFFSET),
                    codec.payloadLong(base + REGION_MMAP_OFFSET_OFFSET), fd);
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("bad region: " + e.getMessage());
        }
    }

    private void setMemTable() throws ProtocolException {
        int size = codec.size();
        if (size < MEM_REGIONS_OFFSET) {
            throw new ProtocolException("payload size " + size + " shorter than the region count");
        }
        int n = codec.payloadInt(MEM_NREGIONS_OFFSET);
        if (n < 1 || n > MEM_MAX_REGIONS) {
            throw new ProtocolException(Integer.toUnsignedString(n) + " regions, expected 1.." + MEM_MAX_REGIONS);
        }
        int exact = MEM_REGIONS_OFFSET + n * REGION_SIZE;
        int full = MEM_REGIONS_OFFSET + MEM_MAX_REGIONS * REGION_SIZE;
        // QEMU sends exactly n regions; a front-end sending the whole fixed-size struct is accepted too.
        if (size != exact && size != full) {
            throw new ProtocolException("payload size " + size + " for " + n + " regions, expected " + exact);
        }
        if (codec.fdCount() != n) {
            throw new ProtocolException(codec.fdCount() + " fds for " + n + " regions");
        }
        List<MemoryRegion> table = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            MemoryRegion r = readRegion(MEM_REGIONS_OFFSET + i * REGION_SIZE, codec.fdAt(i));
            checkRegion(r);
            table.add(r);
        }
        checkNoOverlap(table);
        noteShrinkable(table);
        GuestMemory next;
        try {
            next = GuestMemory.map(table, mapper);
        } catch (RuntimeException e) {
            throw new ProtocolException("mapping the memory table failed: " + e.getMessage());
        }
        // The mappings keep the memory alive; the fds close with the message.
        install(next);
        LOG.log(Level.DEBUG, "{0}: memory table with {1} regions", name, n);
    }

    private void addMemReg() throws ProtocolException {
        requireProtocol(PROTOCOL_F_CONFIGURE_MEM_SLOTS, ADD_MEM_REG);
        expect(SINGLE_REGION_SIZE, 1);
        MemoryRegion r = readRegion(SINGLE_REGION_OFFSET, codec.fdAt(0));
        checkRegion(r);
        GuestMemory current = memory != null ? memory : GuestMemory.empty();
        if (indexOf(current, r, true) >= 0) {
            // QEMU (7.2 and others before it skipped them) sends the memory messages once per vhost_dev,
            // i.e. once per queue pair on the same socket: the second pair re-adds every region the
            // first one added. The same region again is a no-op, not an overlap.
            LOG.log(Level.DEBUG, "{0}: region gpa=0x{1} size=0x{2} already in the table (duplicate ADD_MEM_REG)",
                    name, Long.toHexString(r.guestPhysAddr()), Long.toHexString(r.size()));
            return;
        }
        if (current.regionCount() >= MAX_MEM_SLOTS) {
            throw new ProtocolException("all " + MAX_MEM_SLOTS + " memory slots in use");
        }
        List<MemoryRegion> all = new ArrayList<>(current.regions());
        all.add(r);
        checkNoOverlap(all);
        noteShrinkable(List.of(r));
        GuestMemory next;
        try {
            next = current.withAdded(r, mapper);
        } catch (RuntimeException e) {
            throw new ProtocolException("mapping the region failed: " + e.getMessage());
        }
        install(next);
        LOG.log(Level.DEBUG, "{0}: added region gpa=0x{1} size=0x{2} ({3} regions)", name,
                Long.toHexString(r.guestPhysAddr()), Long.toHexString(r.size()), next.regionCount());
    }

    private void remMemReg() throws ProtocolException {
        requireProtocol(PROTOCOL_F_CONFIGURE_MEM_SLOTS, REM_MEM_REG);
        if (codec.size() != SINGLE_REGION_SIZE) {
            throw new ProtocolException("payload size " + codec.size() + ", expected " + SINGLE_REGION_SIZE);
        }
        // The spec tolerates one (unused) fd for compatibility; it is closed with the message.
        if (codec.fdCount() > 1) {
            throw new ProtocolException(codec.fdCount() + " fds attached, expected 0");
        }
        MemoryRegion r = readRegion(SINGLE_REGION_OFFSET, -1);
        if (memory == null || indexOf(memory, r, false) < 0) {
            // The counterpart of the duplicate ADD_MEM_REG: with several queue pairs QEMU removes a
            // region once per queue pair; the first removal took it, the later ones find nothing.
            LOG.log(Level.DEBUG, "{0}: no region gpa=0x{1} uaddr=0x{2} size=0x{3} (duplicate REM_MEM_REG): nothing to do",
                    name, Long.toHexString(r.guestPhysAddr()), Long.toHexString(r.userAddr()), Long.toHexString(r.size()));
            return;
        }
        install(memory.withRemoved(r.guestPhysAddr(), r.size()));
        LOG.log(Level.DEBUG, "{0}: removed region gpa=0x{1} ({2} regions)", name, Long.toHexString(r.guestPhysAddr()),
                memory.regionCount());
    }

    /**
     * Reports regions whose file the front-end can still shrink after we map it (no
     * {@code F_SEAL_SHRINK}: hugetlbfs files, DPDK's memory, memfds without seals; QEMU seals its memfd
     * backends). They are accepted — refusing them would refuse most real front-ends — but a shrink
     * makes our accesses fault: the queue pair that touches the missing pages stops with
     * {@code MEMORY_FAULT}, the process carries on (docs/VHOST-USER.md).
     */
    private void noteShrinkable(List<MemoryRegion> regions) {
        StringBuilder b = null;
        for (MemoryRegion r : regions) {
            int seals;
            try {
                seals = Fds.seals(r.fd());
            } catch (RuntimeException e) {
                seals = -1;
            }
            if (seals >= 0 && (seals & Fds.F_SEAL_SHRINK) != 0) {
                continue;
            }
            b = b == null ? new StringBuilder() : b.append(", ");
            b.append("gpa=0x").append(Long.toHexString(r.guestPhysAddr())).append(" size=0x")
                    .append(Long.toHexString(r.size())).append(seals < 0 ? " (file cannot be sealed)" : " (not sealed)");
        }
        if (b == null) {
            return;
        }
        Level level = shrinkableLogged ? Level.DEBUG : Level.INFO;
        shrinkableLogged = true;
        LOG.log(level, "{0}: memory the front-end could shrink under us (no F_SEAL_SHRINK): {1}; a shrink stops"
                + " the queue pair that touches it (MEMORY_FAULT), not the process", name, b);
    }

    /**
     * Hands {@code next} to the device, then retires the old table (unmapping what {@code next} does
     * not share). Running rings that {@code next} does not cover are stopped first (the device must
     * never translate a running ring against a table without it); afterwards every ring that can run
     * (again) is started. If the device refuses, {@code next}'s own new mappings are unmapped and the
     * paused rings restart on the old table.
     */
    private void install(GuestMemory next) {
        for (int q = 0; q < rings.length; q++) {
            Vring r = rings[q];
            if (r.started && !ringMapped(next, r.size, r.desc, r.avail, r.used)) {
                stopRing(q);
                LOG.log(Level.DEBUG, "{0}: ring {1} paused at {2}: not covered by the new memory table", name, q,
                        r.base);
            }
        }
        GuestMemory old = memory;
        try {
            backend.onMemoryTable(next);
        } catch (RuntimeException e) {
            next.retire(old);
            startPendingRings();
            throw e;
        }
        memory = next;
        if (old != null) {
            old.retire(next);
        }
        JvhostEvents.memoryTable(name, next.regionCount(), next.regions().stream().mapToLong(MemoryRegion::size).sum());
        startPendingRings();
    }

    /**
     * Index of the region in {@code m} that is exactly {@code r} (guest-physical address, size and
     * front-end address; with {@code matchOffset} also the mmap offset, which REM_MEM_REG need not
     * carry), or -1.
     */
    private static int indexOf(GuestMemory m, MemoryRegion r, boolean matchOffset) {
        List<MemoryRegion> all = m.regions();
        for (int i = 0; i < all.size(); i++) {
            MemoryRegion e = all.get(i);
            if (e.guestPhysAddr() == r.guestPhysAddr() && e.userAddr() == r.userAddr() && e.size() == r.size()
                    && (!matchOffset || e.mmapOffset() == r.mmapOffset())) {
                return i;
            }
        }
        return -1;
    }

    private static void checkRegion(MemoryRegion r) throws ProtocolException {
        String what = "region gpa=0x" + Long.toHexString(r.guestPhysAddr()) + " size=0x" + Long.toHexString(r.size());
        if (r.size() <= 0) {
            throw new ProtocolException(what + ": size must be positive");
        }
        if (Long.compareUnsigned(r.guestPhysAddr() + r.size() - 1, r.guestPhysAddr()) < 0) {
            throw new ProtocolException(what + ": guest address range wraps");
        }
        if (Long.compareUnsigned(r.userAddr() + r.size() - 1, r.userAddr()) < 0) {
            throw new ProtocolException(what + ": user address range wraps");
        }
        if (r.mmapOffset() < 0 || r.mmapOffset() + r.size() < r.mmapOffset()) {
            throw new ProtocolException(what + ": mmap offset 0x" + Long.toHexString(r.mmapOffset()) + " out of range");
        }
        long fileSize = fileSize(r.fd(), what);
        if (r.mmapOffset() + r.size() > fileSize) {
            throw new ProtocolException(what + ": mmap offset 0x" + Long.toHexString(r.mmapOffset())
                    + " + size points past the end of its fd (0x" + Long.toHexString(fileSize) + " bytes)");
        }
    }

    /**
     * Size of the file behind a received fd. stat through /proc/self/fd follows the descriptor to
     * the memfd/hugetlbfs inode, so this needs no extra syscall binding. Mapping past the end of the
     * file would succeed and then SIGBUS the whole process on first touch: this check is what keeps
     * a bad front-end from killing other devices.
     */
    private static long fileSize(int fd, String what) throws ProtocolException {
        try {
            BasicFileAttributes a = Files.readAttributes(Path.of("/proc/self/fd/" + fd), BasicFileAttributes.class);
            if (!a.isRegularFile()) {
                throw new ProtocolException(what + ": fd is not a mappable file");
            }
            return a.size();
        } catch (IOException e) {
            throw new ProtocolException(what + ": cannot stat its fd: " + e.getMessage());
        }
    }

    private static void checkNoOverlap(List<MemoryRegion> table) throws ProtocolException {
        for (int i = 0; i < table.size(); i++) {
            for (int j = i + 1; j < table.size(); j++) {
                MemoryRegion a = table.get(i);
                MemoryRegion b = table.get(j);
                if (overlaps(a.guestPhysAddr(), a.size(), b.guestPhysAddr(), b.size())) {
                    throw new ProtocolException("regions overlap in guest-physical space: 0x"
                            + Long.toHexString(a.guestPhysAddr()) + " and 0x" + Long.toHexString(b.guestPhysAddr()));
                }
                if (overlaps(a.userAddr(), a.size(), b.userAddr(), b.size())) {
                    throw new ProtocolException("regions overlap in front-end address space: 0x"
                            + Long.toHexString(a.userAddr()) + " and 0x" + Long.toHexString(b.userAddr()));
                }
            }
        }
    }

    /** Unsigned [a, a+alen) ∩ [b, b+blen) ≠ ∅ for ranges known not to wrap. */
    private static boolean overlaps(long a, long alen, long b, long blen) {
        return Long.compareUnsigned(a, b + blen - 1) <= 0 && Long.compareUnsigned(b, a + alen - 1) <= 0;
    }

    /** True if [addr, addr+len) lies wholly in one region's front-end address range of {@code m}. */
    private static boolean userRangeMapped(GuestMemory m, long addr, long len) {
        return m != null && m.uvaToHost(addr, len) != GuestMemory.NO_ADDR;
    }

    /**
     * Whether all three ring structures lie inside {@code m}. Sizes are the virtqueue's own (avail and
     * used always with their 2-byte event trailer, as the device maps them whatever EVENT_IDX says), so
     * a ring the session accepts is one the device can translate.
     */
    private static boolean ringMapped(GuestMemory m, int size, long desc, long avail, long used) {
        return userRangeMapped(m, desc, VringDesc.tableSize(size)) && userRangeMapped(m, avail, VringAvail.sizeOf(size))
                && userRangeMapped(m, used, VringUsed.sizeOf(size));
    }

    // ------------------------------------------------------------------ rings

    private void setVringNum() throws ProtocolException {
        expect(STATE_SIZE, 0);
        int q = ringIndex(codec.payloadInt(STATE_INDEX_OFFSET));
        int num = codec.payloadInt(STATE_NUM_OFFSET);
        if (num < 1 || num > MAX_RING_SIZE || Integer.bitCount(num) != 1) {
            throw new ProtocolException("ring " + q + ": size " + Integer.toUnsignedString(num)
                    + " is not a power of two in [1, " + MAX_RING_SIZE + "]");
        }
        if (rings[q].started) {
            throw new ProtocolException("ring " + q + " is running; stop it with GET_VRING_BASE first");
        }
        rings[q].size = num;
    }

    private void setVringBase() throws ProtocolException {
        expect(STATE_SIZE, 0);
        int q = ringIndex(codec.payloadInt(STATE_INDEX_OFFSET));
        int num = codec.payloadInt(STATE_NUM_OFFSET);
        if (num < 0 || num > 0xffff) {
            throw new ProtocolException("ring " + q + ": base " + Integer.toUnsignedString(num) + " exceeds 16 bits");
        }
        if (rings[q].started) {
            throw new ProtocolException("ring " + q + " is running; stop it with GET_VRING_BASE first");
        }
        rings[q].base = num;
    }

    private void getVringBase() throws ProtocolException, VhostUserCodec.StreamException {
        expect(STATE_SIZE, 0);
        int q = ringIndex(codec.payloadInt(STATE_INDEX_OFFSET));
        Vring r = rings[q];
        stopRing(q);
        // The ring needs a new kick (fd or NOFD) before it starts again.
        VhostUserCodec.closeQuietly(r.kickFd);
        r.kickFd = -1;
        r.kickSet = false;
        MemorySegment p = codec.txPayload();
        p.set(U32, STATE_INDEX_OFFSET, q);
        p.set(U32, STATE_NUM_OFFSET, r.base);
        codec.reply(STATE_SIZE);
        LOG.log(Level.DEBUG, "{0}: ring {1} stopped at {2}", name, q, r.base);
    }

    private void stopRing(int q) {
        Vring r = rings[q];
        if (r.started) {
            r.started = false;
            r.base = backend.stopRing(q) & 0xffff;
            JvhostEvents.ringStopped(name, q, r.base);
        }
    }

    private void setVringAddr() throws ProtocolException {
        expect(ADDR_SIZE, 0);
        int q = ringIndex(codec.payloadInt(ADDR_INDEX_OFFSET));
        int flags = codec.payloadInt(ADDR_FLAGS_OFFSET);
        long desc = codec.payloadLong(ADDR_DESC_OFFSET);
        long used = codec.payloadLong(ADDR_USED_OFFSET);
        long avail = codec.payloadLong(ADDR_AVAIL_OFFSET);
        long log = codec.payloadLong(ADDR_LOG_OFFSET);
        if (flags != 0) {
            throw new ProtocolException("ring " + q + ": flags 0x" + Integer.toHexString(flags)
                    + " (dirty logging is not offered)");
        }
        if ((desc & (VringDesc.ALIGN - 1)) != 0 || (avail & (VringAvail.ALIGN - 1)) != 0
                || (used & (VringUsed.ALIGN - 1)) != 0) {
            throw new ProtocolException("ring " + q + ": misaligned ring addresses desc=0x" + Long.toHexString(desc)
                    + " avail=0x" + Long.toHexString(avail) + " used=0x" + Long.toHexString(used));
        }
        Vring r = rings[q];
        if (memory != null && r.size > 0) {
            checkRingMapped(q, r.size, desc, avail, used);
        }
        boolean restart = r.started;
        if (restart) {
            // QEMU re-sends addresses on a running ring (e.g. when toggling logging): stop, update, restart.
            stopRing(q);
        }
        r.desc = desc;
        r.used = used;
        r.avail = avail;
        r.log = log;
        r.addrFlags = flags;
        r.addrSet = true;
        maybeStart(q);
    }

    private void checkRingMapped(int q, int size, long desc, long avail, long used) throws ProtocolException {
        if (!userRangeMapped(memory, desc, VringDesc.tableSize(size))) {
            throw new ProtocolException("ring " + q + ": descriptor table 0x" + Long.toHexString(desc)
                    + " is not inside the memory table");
        }
        if (!userRangeMapped(memory, avail, VringAvail.sizeOf(size))) {
            throw new ProtocolException("ring " + q + ": available ring 0x" + Long.toHexString(avail)
                    + " is not inside the memory table");
        }
        if (!userRangeMapped(memory, used, VringUsed.sizeOf(size))) {
            throw new ProtocolException("ring " + q + ": used ring 0x" + Long.toHexString(used)
                    + " is not inside the memory table");
        }
    }

    private void setVringFd(int req) throws ProtocolException {
        if (codec.size() != U64_SIZE) {
            throw new ProtocolException("payload size " + codec.size() + ", expected " + U64_SIZE);
        }
        long u = codec.payloadLong(0);
        if ((u & ~(VRING_IDX_MASK | VRING_NOFD_MASK)) != 0) {
            throw new ProtocolException("unknown bits in 0x" + Long.toHexString(u));
        }
        int q = ringIndex(u & VRING_IDX_MASK);
        boolean nofd = (u & VRING_NOFD_MASK) != 0;
        int wantFds = nofd ? 0 : 1;
        if (codec.fdCount() != wantFds) {
            throw new ProtocolException(codec.fdCount() + " fds attached, expected " + wantFds
                    + (nofd ? " (NOFD flag set)" : ""));
        }
        Vring r = rings[q];
        switch (req) {
            case SET_VRING_KICK -> {
                if (memory != null && r.size > 0 && r.addrSet) {
                    checkRingMapped(q, r.size, r.desc, r.avail, r.used);
                }
                stopRing(q); // a new kick fd on a running ring: restart with it
                int fd = nofd ? -1 : codec.takeFd(0);
                VhostUserCodec.closeQuietly(r.kickFd);
                r.kickFd = fd;
                r.kickSet = true;
                maybeStart(q);
            }
            case SET_VRING_CALL -> {
                // The device gets the fd first; only once it accepted does the session own it (a refusal
                // leaves the old fd in place and the new one closes with the message).
                int fd = nofd ? -1 : codec.fdAt(0);
                if (r.started) {
                    backend.setCallFd(q, fd);
                }
                if (!nofd) {
                    codec.takeFd(0);
                }
                VhostUserCodec.closeQuietly(r.callFd);
                r.callFd = fd;
            }
            default -> {
                int fd = nofd ? -1 : codec.fdAt(0);
                if (r.started) {
                    backend.setErrFd(q, fd);
                }
                if (!nofd) {
                    codec.takeFd(0);
                }
                VhostUserCodec.closeQuietly(r.errFd);
                r.errFd = fd;
            }
        }
    }

    private void setEnabled(int q, boolean on) {
        Vring r = rings[q];
        boolean was = r.enabled;
        r.enabled = on;
        if (r.started && was != on) {
            backend.setRingEnabled(q, on);
        }
    }

    private boolean canStart(Vring r) {
        return !r.started && r.kickSet && r.addrSet && r.size > 0 && memory != null;
    }

    private void maybeStart(int q) throws ProtocolException {
        Vring r = rings[q];
        if (!canStart(r)) {
            return;
        }
        checkRingMapped(q, r.size, r.desc, r.avail, r.used);
        backend.startRing(new RingConfig(q, r.size, r.desc, r.avail, r.used, r.log, r.addrFlags, r.base, r.kickFd,
                r.callFd, r.errFd, r.enabled, ackedFeatures, memory));
        r.started = true;
        JvhostEvents.ringStarted(name, q, r.size, r.base, r.enabled);
        LOG.log(Level.DEBUG, "{0}: ring {1} started (size {2}, base {3}, {4}, {5})", name, q, r.size, r.base,
                r.kickFd < 0 ? "polled" : "kicked", r.enabled ? "enabled" : "disabled");
    }

    /** After a memory table change, rings that waited for memory start now (if the table covers them). */
    private void startPendingRings() {
        for (int q = 0; q < rings.length; q++) {
            Vring r = rings[q];
            if (canStart(r) && ringMapped(memory, r.size, r.desc, r.avail, r.used)) {
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

    // ------------------------------------------------------------------ config space

    private void getConfig() throws ProtocolException, VhostUserCodec.StreamException {
        int size = codec.size();
        String bad = null;
        int off = 0;
        int len = 0;
        if ((offeredProtocol & (1L << PROTOCOL_F_CONFIG)) == 0) {
            bad = "CONFIG protocol feature not offered";
        } else if (codec.fdCount() != 0) {
            bad = codec.fdCount() + " fds attached";
        } else if (size < CONFIG_PAYLOAD_OFFSET) {
            bad = "payload size " + size + " shorter than the config header";
        } else {
            off = codec.payloadInt(CONFIG_OFFSET_OFFSET);
            len = codec.payloadInt(CONFIG_SIZE_OFFSET);
            if (len < 0 || len > CONFIG_MAX_SIZE || size != CONFIG_PAYLOAD_OFFSET + len) {
                bad = "config size " + Integer.toUnsignedString(len) + " does not match payload size " + size;
            } else if (off < 0 || off > CONFIG_MAX_SIZE - len) {
                bad = "config range " + Integer.toUnsignedString(off) + "+" + len + " outside the config space";
            }
        }
        if (bad != null) {
            // The spec's error answer for GET_CONFIG is a reply with an empty payload.
            LOG.log(Level.WARNING, "{0}: GET_CONFIG rejected: {1}; the front-end gets an empty answer and"
                    + " keeps its defaults (MAC, MTU): check the front-end's version", name, bad);
            codec.reply(0);
            return;
        }
        MemorySegment space = configSpace();
        MemorySegment p = codec.txPayload();
        p.set(U32, CONFIG_OFFSET_OFFSET, off);
        p.set(U32, CONFIG_SIZE_OFFSET, len);
        p.set(U32, CONFIG_FLAGS_OFFSET, codec.payloadInt(CONFIG_FLAGS_OFFSET));
        MemorySegment.copy(space, off, p, CONFIG_PAYLOAD_OFFSET, len);
        codec.reply(CONFIG_PAYLOAD_OFFSET + len);
    }

    /** The device config space: virtio_net_config followed by zeros up to the protocol's maximum. */
    private MemorySegment configSpace() {
        MemorySegment space = MemorySegment.ofArray(new byte[CONFIG_MAX_SIZE]);
        backend.config().writeTo(space);
        return space;
    }

    private void setConfig() throws ProtocolException {
        requireProtocol(PROTOCOL_F_CONFIG, SET_CONFIG);
        int size = codec.size();
        if (codec.fdCount() != 0) {
            throw new ProtocolException(codec.fdCount() + " fds attached, expected 0");
        }
        if (size < CONFIG_PAYLOAD_OFFSET) {
            throw new ProtocolException("payload size " + size + " shorter than the config header");
        }
        int off = codec.payloadInt(CONFIG_OFFSET_OFFSET);
        int len = codec.payloadInt(CONFIG_SIZE_OFFSET);
        int flags = codec.payloadInt(CONFIG_FLAGS_OFFSET);
        if (len < 0 || len > CONFIG_MAX_SIZE || size != CONFIG_PAYLOAD_OFFSET + len) {
            throw new ProtocolException("config size " + Integer.toUnsignedString(len) + " does not match payload size "
                    + size);
        }
        if (off < 0 || off > CONFIG_MAX_SIZE - len) {
            throw new ProtocolException("config range " + Integer.toUnsignedString(off) + "+" + len
                    + " outside the config space");
        }
        if (flags != CONFIG_FLAG_WRITABLE && flags != CONFIG_FLAG_MIGRATION) {
            throw new ProtocolException("config flags " + Integer.toUnsignedString(flags) + " unknown");
        }
        MemorySegment before = configSpace();
        MemorySegment after = MemorySegment.ofArray(before.toArray(ValueLayout.JAVA_BYTE));
        MemorySegment.copy(codec.payload(), CONFIG_PAYLOAD_OFFSET, after, off, len);
        // Only the MAC is driver-writable in virtio-net config space; every other byte must be unchanged.
        long firstDiff = before.asSlice(VirtioNetConfig.MAC_LENGTH).mismatch(after.asSlice(VirtioNetConfig.MAC_LENGTH));
        if (firstDiff >= 0) {
            throw new ProtocolException("write to read-only config byte " + (firstDiff + VirtioNetConfig.MAC_LENGTH));
        }
        if (before.asSlice(0, VirtioNetConfig.MAC_LENGTH).mismatch(after.asSlice(0, VirtioNetConfig.MAC_LENGTH)) >= 0) {
            byte[] mac = after.asSlice(0, VirtioNetConfig.MAC_LENGTH).toArray(ValueLayout.JAVA_BYTE);
            if (!backend.setMac(mac)) {
                throw new ProtocolException("device refused MAC " + VirtioNetConfig.formatMac(mac));
            }
        }
    }

    // ------------------------------------------------------------------ reset / close

    /** RESET_DEVICE: back to the state after SET_OWNER (ownership and protocol features stay). */
    private void resetDeviceState() {
        for (int q = 0; q < rings.length; q++) {
            try {
                stopRing(q);
            } catch (RuntimeException e) {
                LOG.log(Level.ERROR, name + ": stopping ring " + q + " failed", e);
            }
        }
        try {
            backend.reset();
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": device reset failed", e);
        }
        for (int q = 0; q < rings.length; q++) {
            Vring r = rings[q];
            VhostUserCodec.closeQuietly(r.kickFd);
            VhostUserCodec.closeQuietly(r.callFd);
            VhostUserCodec.closeQuietly(r.errFd);
            rings[q] = new Vring();
        }
        GuestMemory old = memory;
        memory = null;
        if (old != null) {
            try {
                old.close();
            } catch (RuntimeException e) {
                LOG.log(Level.ERROR, name + ": unmapping guest memory failed", e);
            }
        }
        ackedFeatures = 0;
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
        return rings[q].started;
    }

    public boolean owner() {
        return owner;
    }

    public String name() {
        return name;
    }
}
