package io.jvhost.driver;

import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.vhostuser.VhostUserMessage.*;

import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import io.jvhost.vhostuser.VhostUserCodec;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.net.VirtioNetConfig;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/**
 * The front-end side of vhost-user, as QEMU speaks it: connects to a back-end's socket (or uses a
 * connected fd), negotiates features, sends the memory table with its fds, sets up rings with kick
 * and call eventfds, enables and stops them, reads and writes config space. Tests, the demo and the
 * bench drive jvhost through it; {@link #sendRaw} and {@link #send} let tests send malformed messages.
 *
 * <p>After {@link #setProtocolFeatures} with REPLY_ACK, every request without its own reply carries
 * NEED_REPLY and the back-end's status is checked: non-zero throws {@link Rejected}.
 *
 * <p>Not thread-safe: one thread drives a client. Fds passed in (kick, call, memory) stay owned by
 * the caller; the back-end receives its own copies.
 */
public final class VhostUserClient implements AutoCloseable {

    /** The back-end answered a request with a non-zero REPLY_ACK status (the request was not applied). */
    public static final class Rejected extends RuntimeException {
        private static final long serialVersionUID = 1L;
        private final int request;
        private final long status;

        Rejected(int request, long status) {
            super(VhostUserMessage.requestName(request) + " rejected by the back-end (status " + status + ")");
            this.request = request;
            this.status = status;
        }

        public int request() {
            return request;
        }

        public long status() {
            return status;
        }
    }

    /** The connection failed or the back-end closed it. */
    public static final class ConnectionLost extends RuntimeException {
        private static final long serialVersionUID = 1L;

        ConnectionLost(String message) {
            super(message);
        }
    }

    /** A reply as received. */
    public record Reply(int request, int flags, byte[] payload, int fdCount) {
        public long u64() {
            return MemorySegment.ofArray(payload).get(U64, 0);
        }
    }

    private final int fd;
    private final VhostUserCodec codec;
    private int timeoutMs = 5000;
    private boolean replyAck;
    private long protocolFeatures;
    private boolean closed;

    private VhostUserClient(int fd) {
        this.fd = fd;
        this.codec = new VhostUserCodec(fd);
    }

    /** Connects to a back-end listening at {@code path}. */
    public static VhostUserClient connect(String path) {
        return new VhostUserClient(UnixSocket.connect(path));
    }

    /** Drives an already connected socket (e.g. accepted when the front-end is the server); takes ownership. */
    public static VhostUserClient onFd(int fd) {
        return new VhostUserClient(fd);
    }

    public int fd() {
        return fd;
    }

    /** How long to wait for a reply. */
    public VhostUserClient timeoutMs(int ms) {
        this.timeoutMs = ms;
        return this;
    }

    /** Whether requests now carry NEED_REPLY (REPLY_ACK negotiated). */
    public boolean replyAck() {
        return replyAck;
    }

    /** Forces NEED_REPLY on or off regardless of negotiation (tests). */
    public void replyAck(boolean on) {
        this.replyAck = on;
    }

    // ------------------------------------------------------------------ low level

    /**
     * Sends a request with {@code payload} and {@code fds}, version 1 plus {@code extraFlags}. Does
     * not wait for anything.
     */
    public void send(int request, int extraFlags, byte[] payload, int[] fds) {
        MemorySegment p = codec.txPayload();
        int len = payload == null ? 0 : payload.length;
        MemorySegment.copy(payload == null ? new byte[0] : payload, 0, p, ValueLayout.JAVA_BYTE, 0, len);
        try {
            codec.send(request, VERSION | extraFlags, len, fds);
        } catch (VhostUserCodec.StreamException e) {
            throw new ConnectionLost(e.getMessage());
        }
    }

    /** Sends {@code bytes} exactly as given (header included; may lie about its size) with {@code fds}. */
    public void sendRaw(byte[] bytes, int[] fds) {
        MemorySegment.copy(bytes, 0, codec.txBuffer(), ValueLayout.JAVA_BYTE, 0, bytes.length);
        try {
            codec.sendRaw(bytes.length, fds);
        } catch (VhostUserCodec.StreamException e) {
            throw new ConnectionLost(e.getMessage());
        }
    }

    /** Waits for the next message from the back-end. */
    public Reply readReply() {
        if (Poll.poll(fd, Poll.POLLIN, timeoutMs) == 0) {
            throw new ConnectionLost("no reply within " + timeoutMs + " ms");
        }
        try {
            if (codec.read(timeoutMs) == VhostUserCodec.ReadResult.EOF) {
                throw new ConnectionLost("back-end closed the connection");
            }
        } catch (VhostUserCodec.StreamException e) {
            throw new ConnectionLost(e.getMessage());
        }
        try {
            return new Reply(codec.request(), codec.flags(), codec.payload().toArray(ValueLayout.JAVA_BYTE),
                    codec.fdCount());
        } finally {
            codec.closeFds();
        }
    }

    /** Waits for the reply to {@code request}, checking the REPLY flag and request code. */
    private Reply expectReply(int request) {
        Reply r = readReply();
        if (r.request() != request || (r.flags() & FLAG_REPLY) == 0 || (r.flags() & FLAGS_VERSION_MASK) != VERSION) {
            throw new ConnectionLost("unexpected reply " + VhostUserMessage.requestName(r.request()) + " flags 0x"
                    + Integer.toHexString(r.flags()) + " to " + VhostUserMessage.requestName(request));
        }
        return r;
    }

    /** True if the back-end closes the connection within {@code ms} (it rejected something without REPLY_ACK). */
    public boolean awaitClosed(int ms) {
        long end = System.nanoTime() + ms * 1_000_000L;
        while (System.nanoTime() - end < 0) {
            int left = (int) Math.max(1, (end - System.nanoTime()) / 1_000_000L);
            if (Poll.poll(fd, Poll.POLLIN, left) != 0) {
                try {
                    if (codec.read(timeoutMs) == VhostUserCodec.ReadResult.EOF) {
                        return true;
                    }
                    codec.closeFds(); // an unexpected message: ignore it and keep waiting
                } catch (VhostUserCodec.StreamException e) {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * Sends a request that has no reply body of its own; with REPLY_ACK it carries NEED_REPLY and a
     * non-zero status throws {@link Rejected}. Tests use it for malformed payloads and fd counts.
     */
    public void sendAck(int request, byte[] payload, int[] fds) {
        simple(request, payload, fds);
    }

    private void simple(int request, byte[] payload, int[] fds) {
        send(request, replyAck ? FLAG_NEED_REPLY : 0, payload, fds);
        if (replyAck) {
            long status = expectReply(request).u64();
            if (status != 0) {
                throw new Rejected(request, status);
            }
        }
    }

    private long getU64(int request) {
        send(request, 0, null, null);
        Reply r = expectReply(request);
        if (r.payload().length != U64_SIZE) {
            throw new ConnectionLost(VhostUserMessage.requestName(request) + " reply of " + r.payload().length + " bytes");
        }
        return r.u64();
    }

    /** A u64 payload. */
    public static byte[] u64(long v) {
        byte[] b = new byte[U64_SIZE];
        MemorySegment.ofArray(b).set(U64, 0, v);
        return b;
    }

    /** A vring state payload. */
    public static byte[] state(int index, int num) {
        byte[] b = new byte[STATE_SIZE];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(U32, STATE_INDEX_OFFSET, index);
        s.set(U32, STATE_NUM_OFFSET, num);
        return b;
    }

    private static void putRegion(MemorySegment s, long at, MemoryRegion r) {
        s.set(U64, at + REGION_GPA_OFFSET, r.guestPhysAddr());
        s.set(U64, at + REGION_SIZE_OFFSET, r.size());
        s.set(U64, at + REGION_UADDR_OFFSET, r.userAddr());
        s.set(U64, at + REGION_MMAP_OFFSET_OFFSET, r.mmapOffset());
    }

    // ------------------------------------------------------------------ requests

    public long getFeatures() {
        return getU64(GET_FEATURES);
    }

    public void setFeatures(long features) {
        simple(SET_FEATURES, u64(features), null);
    }

    public long getProtocolFeatures() {
        return getU64(GET_PROTOCOL_FEATURES);
    }

    /** Sets protocol features; if REPLY_ACK is among them, later requests ask for acks. */
    public void setProtocolFeatures(long features) {
        simple(SET_PROTOCOL_FEATURES, u64(features), null);
        replyAck = (features & (1L << PROTOCOL_F_REPLY_ACK)) != 0;
        protocolFeatures = features;
    }

    /** The protocol features this client set (0 before SET_PROTOCOL_FEATURES). */
    public long protocolFeatures() {
        return protocolFeatures;
    }

    public void setOwner() {
        simple(SET_OWNER, null, null);
    }

    public void resetOwner() {
        simple(RESET_OWNER, null, null);
    }

    public void resetDevice() {
        simple(RESET_DEVICE, null, null);
    }

    /**
     * SET_LOG_BASE with a log fd (LOG_SHMFD): {@code size} bytes at {@code offset}. With LOG_SHMFD
     * negotiated the back-end answers with a reply of its own (QEMU waits for it); a back-end that
     * refuses the log closes the connection ({@link ConnectionLost}).
     */
    public void setLogBase(int logFd, long size, long offset, boolean shmfdNegotiated) {
        byte[] b = new byte[LOG_SIZE];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(U64, LOG_MMAP_SIZE_OFFSET, size);
        s.set(U64, LOG_MMAP_OFFSET_OFFSET, offset);
        if (shmfdNegotiated) {
            send(SET_LOG_BASE, 0, b, new int[] {logFd});
            expectReply(SET_LOG_BASE);
        } else {
            simple(SET_LOG_BASE, b, new int[] {logFd});
        }
    }

    /** SET_LOG_FD with an eventfd. */
    public void setLogFd(int fd) {
        simple(SET_LOG_FD, null, new int[] {fd});
    }

    public void setStatus(long status) {
        simple(SET_STATUS, u64(status), null);
    }

    public long getStatus() {
        return getU64(GET_STATUS);
    }

    public long getQueueNum() {
        return getU64(GET_QUEUE_NUM);
    }

    public long getMaxMemSlots() {
        return getU64(GET_MAX_MEM_SLOTS);
    }

    /** SET_MEM_TABLE with each region's fd (1..8 regions). */
    public void setMemTable(List<MemoryRegion> regions) {
        byte[] b = new byte[MEM_REGIONS_OFFSET + regions.size() * REGION_SIZE];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(U32, MEM_NREGIONS_OFFSET, regions.size());
        int[] fds = new int[regions.size()];
        for (int i = 0; i < regions.size(); i++) {
            putRegion(s, MEM_REGIONS_OFFSET + (long) i * REGION_SIZE, regions.get(i));
            fds[i] = regions.get(i).fd();
        }
        simple(SET_MEM_TABLE, b, fds);
    }

    public void addMemReg(MemoryRegion r) {
        simple(ADD_MEM_REG, singleRegion(r), new int[] {r.fd()});
    }

    public void remMemReg(MemoryRegion r) {
        simple(REM_MEM_REG, singleRegion(r), null);
    }

    public static byte[] singleRegion(MemoryRegion r) {
        byte[] b = new byte[SINGLE_REGION_SIZE];
        putRegion(MemorySegment.ofArray(b), SINGLE_REGION_OFFSET, r);
        return b;
    }

    public void setVringNum(int q, int num) {
        simple(SET_VRING_NUM, state(q, num), null);
    }

    public void setVringBase(int q, int base) {
        simple(SET_VRING_BASE, state(q, base), null);
    }

    /** Stops ring {@code q} and returns the index the next start must use. */
    public int getVringBase(int q) {
        send(GET_VRING_BASE, 0, state(q, 0), null);
        Reply r = expectReply(GET_VRING_BASE);
        if (r.payload().length != STATE_SIZE) {
            throw new ConnectionLost("GET_VRING_BASE reply of " + r.payload().length + " bytes");
        }
        MemorySegment s = MemorySegment.ofArray(r.payload());
        if (s.get(U32, STATE_INDEX_OFFSET) != q) {
            throw new ConnectionLost("GET_VRING_BASE reply for ring " + s.get(U32, STATE_INDEX_OFFSET) + ", asked " + q);
        }
        return s.get(U32, STATE_NUM_OFFSET);
    }

    /** SET_VRING_ADDR with front-end virtual addresses. */
    public void setVringAddr(int q, int flags, long desc, long used, long avail, long log) {
        simple(SET_VRING_ADDR, vringAddr(q, flags, desc, used, avail, log), null);
    }

    public static byte[] vringAddr(int q, int flags, long desc, long used, long avail, long log) {
        byte[] b = new byte[ADDR_SIZE];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(U32, ADDR_INDEX_OFFSET, q);
        s.set(U32, ADDR_FLAGS_OFFSET, flags);
        s.set(U64, ADDR_DESC_OFFSET, desc);
        s.set(U64, ADDR_USED_OFFSET, used);
        s.set(U64, ADDR_AVAIL_OFFSET, avail);
        s.set(U64, ADDR_LOG_OFFSET, log);
        return b;
    }

    /** SET_VRING_KICK with {@code fd}, or with the NOFD flag (polled ring) when {@code fd < 0}. */
    public void setVringKick(int q, int fd) {
        vringFd(SET_VRING_KICK, q, fd);
    }

    /** SET_VRING_CALL with {@code fd}, or NOFD when {@code fd < 0}. */
    public void setVringCall(int q, int fd) {
        vringFd(SET_VRING_CALL, q, fd);
    }

    /** SET_VRING_ERR with {@code fd}, or NOFD when {@code fd < 0}. */
    public void setVringErr(int q, int fd) {
        vringFd(SET_VRING_ERR, q, fd);
    }

    private void vringFd(int request, int q, int fd) {
        long u = (q & VRING_IDX_MASK) | (fd < 0 ? VRING_NOFD_MASK : 0);
        simple(request, u64(u), fd < 0 ? null : new int[] {fd});
    }

    public void setVringEnable(int q, boolean enable) {
        simple(SET_VRING_ENABLE, state(q, enable ? 1 : 0), null);
    }

    public void sendRarp(byte[] mac) {
        byte[] b = new byte[U64_SIZE];
        System.arraycopy(mac, 0, b, 0, VirtioNetConfig.MAC_LENGTH);
        simple(SEND_RARP, b, null);
    }

    public void netSetMtu(int mtu) {
        simple(NET_SET_MTU, u64(mtu), null);
    }

    /** GET_CONFIG of {@code size} bytes at {@code offset}; null when the back-end answers with the empty error reply. */
    public byte[] getConfig(int offset, int size, int flags) {
        byte[] b = new byte[CONFIG_PAYLOAD_OFFSET + size];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(U32, CONFIG_OFFSET_OFFSET, offset);
        s.set(U32, CONFIG_SIZE_OFFSET, size);
        s.set(U32, CONFIG_FLAGS_OFFSET, flags);
        send(GET_CONFIG, 0, b, null);
        Reply r = expectReply(GET_CONFIG);
        if (r.payload().length == 0) {
            return null;
        }
        if (r.payload().length != CONFIG_PAYLOAD_OFFSET + size) {
            throw new ConnectionLost("GET_CONFIG reply of " + r.payload().length + " bytes, asked " + size);
        }
        byte[] out = new byte[size];
        System.arraycopy(r.payload(), CONFIG_PAYLOAD_OFFSET, out, 0, size);
        return out;
    }

    /** The whole virtio-net config space, parsed. */
    public VirtioNetConfig getNetConfig() {
        byte[] b = getConfig(0, VirtioNetConfig.SIZE, CONFIG_FLAG_WRITABLE);
        if (b == null) {
            throw new Rejected(GET_CONFIG, 1);
        }
        return VirtioNetConfig.readFrom(MemorySegment.ofArray(b));
    }

    public void setConfig(int offset, byte[] data, int flags) {
        byte[] b = new byte[CONFIG_PAYLOAD_OFFSET + data.length];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(U32, CONFIG_OFFSET_OFFSET, offset);
        s.set(U32, CONFIG_SIZE_OFFSET, data.length);
        s.set(U32, CONFIG_FLAGS_OFFSET, flags);
        System.arraycopy(data, 0, b, CONFIG_PAYLOAD_OFFSET, data.length);
        simple(SET_CONFIG, b, null);
    }

    // ------------------------------------------------------------------ QEMU-like sequences

    /**
     * The start of a QEMU session: GET_FEATURES, GET/SET_PROTOCOL_FEATURES (what both support of
     * {@code wantProtocol}), SET_OWNER, SET_FEATURES (offered ∩ {@code wantFeatures}, plus
     * PROTOCOL_FEATURES when offered; never LOG_ALL, which a front-end sets only while it migrates).
     * Returns the acknowledged virtio features.
     */
    public long negotiate(long wantFeatures, long wantProtocol) {
        return negotiate(wantFeatures, wantProtocol, 0);
    }

    /**
     * {@link #negotiate(long, long)} for a driver that cannot do without the ring bits in
     * {@code requiredRingFeatures} (VIRTIO_F_RING_PACKED, VIRTIO_F_IN_ORDER: it laid its rings out
     * for them): when the back-end does not offer one of them it throws before SET_OWNER and
     * SET_FEATURES, with a message naming what is missing, instead of falling back.
     *
     * @throws IllegalStateException when a required ring feature is not offered
     */
    public long negotiate(long wantFeatures, long wantProtocol, long requiredRingFeatures) {
        long offered = getFeatures();
        String missing = RingOptions.missing(requiredRingFeatures, offered);
        if (missing != null) {
            throw new IllegalStateException("vhost-user back-end: " + missing);
        }
        boolean proto = VirtioFeatures.has(offered, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES);
        if (proto) {
            setProtocolFeatures(getProtocolFeatures() & wantProtocol);
        }
        setOwner();
        long ack = offered & wantFeatures & ~(1L << VirtioFeatures.F_LOG_ALL);
        if (proto) {
            ack |= 1L << VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES;
        }
        setFeatures(ack);
        return ack;
    }

    /** NUM, BASE, ADDR, KICK, CALL for one ring laid out at front-end virtual addresses (QEMU's order). */
    public void setupRing(int q, int size, int base, long desc, long avail, long used, int kickFd, int callFd) {
        setVringNum(q, size);
        setVringBase(q, base);
        setVringAddr(q, 0, desc, used, avail, 0);
        setVringKick(q, kickFd);
        setVringCall(q, callFd);
    }

    /**
     * {@link #setupRing} for a driver-side ring in {@code mem}, split or packed: SET_VRING_BASE with
     * the queue's {@link DriverQueue#base()} (packed: next slot | wrap counter &lt;&lt; 15), SET_VRING_ADDR
     * with its descriptor, driver and device areas (packed: the ring and the driver and device event
     * suppression areas in the desc, avail and used fields).
     */
    public void setupRing(int q, DriverQueue vq, int kickFd, int callFd) {
        DriverMemory mem = vq.memory();
        setupRing(q, vq.size(), vq.base(), mem.userAddress(vq.descGpa()), mem.userAddress(vq.driverGpa()),
                mem.userAddress(vq.deviceGpa()), kickFd, callFd);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        codec.close();
        Fds.closeQuietly(fd);
    }
}
