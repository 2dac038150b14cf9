package io.jvhost.device;

import io.jvhost.net.Frames;
import io.jvhost.net.PacketCapture;
import io.jvhost.net.TapPort;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.engine.QueuePair;
import io.jvhost.engine.QueuePairProxy;
import io.jvhost.engine.WorkerPool;
import io.jvhost.stats.QueueStats;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.Fds;
import io.jvhost.vhostuser.DeviceBackend;
import io.jvhost.virtq.RingJournal;
import io.jvhost.virtq.RingLayout;
import io.jvhost.virtq.RingSetup;
import io.jvhost.net.VirtioNetConfig;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The virtio-net device: a {@link TapPort} plus one {@link QueuePair} per queue pair, driven by a
 * vhost-user session through {@link DeviceBackend} (or directly by tests).
 *
 * <p>Workers: a pair runs on a worker of the device's {@link WorkerPool} from the start of its first
 * ring until the device is reset (the front-end's session ended): the pool shared by every device of
 * the process when {@link Config#withPool} gives one (the CLI does), else a pool of the device's own
 * with one worker per queue pair ({@link WorkerPool#perDevice}).
 *
 * <p>Threading: every {@link DeviceBackend} method runs on the session's control thread; each
 * forwards to the affected pair through its {@link QueuePairProxy}, which returns after the worker
 * applied the change, as the interface requires. {@link #stats()} may be called from any thread.
 */
public final class NetDevice implements DeviceBackend {
    private static final System.Logger LOG = System.getLogger(NetDevice.class.getName());
    /** Largest ring size vhost-user allows. */
    public static final int MAX_RING_SIZE = RingLayout.MAX_SIZE;

    /**
     * @param name        device name (thread names, stats)
     * @param tapName     tap interface to create or attach to (null: kernel picks)
     * @param queuePairs  queue pairs (one tap queue and one worker each)
     * @param mtu         MTU offered to the guest (0: the tap's MTU)
     * @param mac         MAC offered to the guest (6 bytes)
     * @param worker      worker tuning
     * @param capture     pcap file for {@code --capture}, or null
     * @param tapSndBuf   per-queue cap on guest frames the kernel may hold before tap writes return
     *                    EAGAIN and TX pushes back on the guest ({@link TapPort#setSndBuf}); 0: the
     *                    kernel default (unlimited: a slow egress drops instead)
     * @param pool        the workers shared with other devices, or null: workers of the device's own
     * @param ringJournal file where packed rings write down their used positions for a restarted
     *                    back-end ({@link RingJournal}), or null: none (a front-end that lost track
     *                    of a packed ring after a restart is then taken at its word)
     */
    public record Config(String name, String tapName, int queuePairs, int mtu, byte[] mac, WorkerConfig worker,
                         Path capture, int tapSndBuf, WorkerPool pool, Path ringJournal) {
        public Config {
            if (queuePairs < 1) {
                throw new IllegalArgumentException("queuePairs " + queuePairs);
            }
            if (mac == null || mac.length != VirtioNetConfig.MAC_LENGTH) {
                throw new IllegalArgumentException("mac must be 6 bytes");
            }
            if (tapSndBuf < 0) {
                throw new IllegalArgumentException("tapSndBuf " + tapSndBuf);
            }
            mac = mac.clone();
        }

        @Override
        public byte[] mac() {
            return mac.clone();
        }

        public static Config of(String name, String tapName, int queuePairs) {
            return new Config(name, tapName, queuePairs, 0, new byte[]{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
                    WorkerConfig.defaults(), null, 0, null, null);
        }

        public Config withMtu(int m) {
            return new Config(name, tapName, queuePairs, m, mac, worker, capture, tapSndBuf, pool, ringJournal);
        }

        public Config withWorker(WorkerConfig w) {
            return new Config(name, tapName, queuePairs, mtu, mac, w, capture, tapSndBuf, pool, ringJournal);
        }

        public Config withCapture(Path p) {
            return new Config(name, tapName, queuePairs, mtu, mac, worker, p, tapSndBuf, pool, ringJournal);
        }

        public Config withTapSndBuf(int bytes) {
            return new Config(name, tapName, queuePairs, mtu, mac, worker, capture, bytes, pool, ringJournal);
        }

        /**
         * Runs the pairs on {@code p}, shared with other devices, instead of workers of the device's own
         * (then {@link #worker()}'s weight still applies per pair; the pool's workers have their own
         * tuning). The pool outlives the device: its owner closes it.
         */
        public Config withPool(WorkerPool p) {
            return new Config(name, tapName, queuePairs, mtu, mac, worker, capture, tapSndBuf, p, ringJournal);
        }

        /** Packed rings keep their used positions in {@code file} ({@link RingJournal}); null: nowhere. */
        public Config withRingJournal(Path file) {
            return new Config(name, tapName, queuePairs, mtu, mac, worker, capture, tapSndBuf, pool, file);
        }

        public Config withMac(byte[] m) {
            return new Config(name, tapName, queuePairs, mtu, m, worker, capture, tapSndBuf, pool, ringJournal);
        }
    }

    /** Snap length of {@code --capture}: whole 64 KiB GSO frames. */
    public static final int CAPTURE_SNAPLEN = VirtioNetHdr.MAX_GSO_FRAME;
    private static final int CAPTURE_FRAMES = 256;

    private final Config config;
    private final TapPort tap;
    private final WorkerPool pool;
    /** Whether {@link #pool} is the device's own (closed with it). */
    private final boolean ownPool;
    private final QueuePairProxy[] pairs;
    private final PacketCapture capture;
    private volatile long features;
    private volatile int mtu;
    private volatile byte[] mac;

    public NetDevice(Config config) {
        this.config = config;
        this.tap = TapPort.open(config.tapName(), config.queuePairs());
        if (config.tapSndBuf() > 0) {
            try {
                tap.setSndBuf(config.tapSndBuf());
            } catch (RuntimeException e) {
                tap.close();
                throw e;
            }
        }
        this.mac = config.mac();
        this.mtu = config.mtu() > 0 ? config.mtu() : tap.mtu();
        PacketCapture pc = null;
        WorkerPool pl = config.pool() != null ? config.pool()
                : WorkerPool.perDevice(config.name(), config.queuePairs(), config.worker());
        List<QueuePairProxy> ps = new ArrayList<>();
        RingJournal journal = openJournal(config);
        try {
            if (config.capture() != null) {
                pc = new PacketCapture(config.capture(), CAPTURE_SNAPLEN, CAPTURE_FRAMES);
            }
            for (int i = 0; i < config.queuePairs(); i++) {
                QueuePair qp = new QueuePair(config.name(), i, tap.fd(i), config.worker().weight(), MAX_RING_SIZE);
                if (journal != null) {
                    qp.useJournal(journal);
                }
                QueuePairProxy p = new QueuePairProxy(pl, config.name(), qp);
                ps.add(p);
                p.setFeatures(0, mtu);
                if (pc != null) {
                    p.setCapture(pc);
                }
                if (i > 0) {
                    tap.setQueueEnabled(i, false); // no RX ring yet: let the kernel steer to live queues
                }
            }
        } catch (IOException e) {
            release(ps, pl, config.pool() == null);
            tap.close();
            throw new UncheckedIOException("cannot open capture file " + config.capture(), e);
        } catch (RuntimeException e) {
            release(ps, pl, config.pool() == null);
            tap.close();
            throw e;
        }
        this.capture = pc;
        this.pool = pl;
        this.ownPool = config.pool() == null;
        this.pairs = ps.toArray(new QueuePairProxy[0]);
        LOG.log(System.Logger.Level.INFO, "{0}: tap {1}, {2} queue pair(s), mtu {3}", config.name(), tap.ifName(),
                pairs.length, mtu);
    }

    private static RingJournal openJournal(Config config) {
        if (config.ringJournal() == null) {
            return null;
        }
        try {
            return RingJournal.open(config.ringJournal(), 2 * config.queuePairs());
        } catch (IOException | RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "{0}: cannot open the ring journal {1} ({2}): running without it; after"
                    + " a back-end restart a packed ring whose front-end lost track of it stalls until the guest"
                    + " resets the device", config.name(), config.ringJournal(), e.toString());
            return null;
        }
    }

    private static void release(List<QueuePairProxy> ps, WorkerPool pool, boolean ownPool) {
        for (QueuePairProxy p : ps) {
            p.free();
        }
        if (ownPool) {
            pool.close();
        }
    }

    /** The workers the device's pairs run on (shared with other devices, or its own). */
    public WorkerPool pool() {
        return pool;
    }

    public TapPort tap() {
        return tap;
    }

    public String name() {
        return config.name();
    }

    /** The control handle of queue pair {@code queuePair} (tests, tuning at run time). */
    public QueuePairProxy queuePair(int queuePair) {
        return pairs[queuePair];
    }

    /** Current counters and histograms of every queue pair. Any thread. */
    public List<QueueStats> stats() {
        List<QueueStats> out = new ArrayList<>(pairs.length);
        for (QueuePairProxy p : pairs) {
            out.add(QueueStats.of(config.name(), p.queuePair(), p.counters(), p.latency()));
        }
        return out;
    }

    @Override
    public long features() {
        long f = 0;
        for (int b : new int[]{VirtioFeatures.NET_F_CSUM, VirtioFeatures.NET_F_GUEST_CSUM, VirtioFeatures.NET_F_MTU,
                VirtioFeatures.NET_F_MAC, VirtioFeatures.NET_F_GUEST_TSO4, VirtioFeatures.NET_F_GUEST_TSO6,
                VirtioFeatures.NET_F_GUEST_ECN, VirtioFeatures.NET_F_GUEST_UFO, VirtioFeatures.NET_F_HOST_TSO4,
                VirtioFeatures.NET_F_HOST_TSO6, VirtioFeatures.NET_F_HOST_ECN, VirtioFeatures.NET_F_HOST_UFO,
                VirtioFeatures.NET_F_MRG_RXBUF, VirtioFeatures.NET_F_STATUS, VirtioFeatures.F_ANY_LAYOUT,
                // The guest announces itself after migration (QEMU runs the control queue); without
                // it QEMU asks the back-end to send a RARP instead (SEND_RARP).
                VirtioFeatures.NET_F_GUEST_ANNOUNCE,
                VirtioFeatures.RING_F_INDIRECT_DESC, VirtioFeatures.RING_F_EVENT_IDX,
                // packed rings and in-order use: the queue behind DeviceQueue follows the negotiated format
                VirtioFeatures.F_RING_PACKED, VirtioFeatures.F_IN_ORDER,
                // dirty-page logging for live migration (with the LOG_SHMFD protocol feature)
                VirtioFeatures.F_LOG_ALL,
                VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES, VirtioFeatures.F_VERSION_1}) {
            f |= 1L << b;
        }
        if (pairs.length > 1) {
            f |= 1L << VirtioFeatures.NET_F_MQ;
        }
        if (tap.usoSupported()) {
            // UDP GSO both ways (Linux 6.2+ taps); on an older kernel a guest's UDP_L4 frame would
            // only earn EINVAL from the tap, so nothing is offered there.
            f |= VirtioFeatures.bit(VirtioFeatures.NET_F_HOST_USO) | VirtioFeatures.bit(VirtioFeatures.NET_F_GUEST_USO4)
                    | VirtioFeatures.bit(VirtioFeatures.NET_F_GUEST_USO6);
        }
        return f;
    }

    @Override
    public int maxQueuePairs() {
        return pairs.length;
    }

    @Override
    public void onFeaturesSet(long f) {
        this.features = f;
        tap.applyFeatures(f);
        int m = mtu;
        for (QueuePairProxy p : pairs) {
            p.setFeatures(f, m);
        }
    }

    public long negotiatedFeatures() {
        return features;
    }

    @Override
    public void onMemoryTable(GuestMemory memory) {
        for (QueuePairProxy p : pairs) {
            if (!p.setMemory(memory)) {
                LOG.log(System.Logger.Level.WARNING, "{0}: a running ring is outside the new memory table; it stays"
                        + " stopped until the front-end sends a table that covers it", p.name());
            }
        }
    }

    @Override
    public void setDirtyLog(DirtyLog log, boolean logAll) {
        for (QueuePairProxy p : pairs) {
            p.setDirtyLog(log, logAll);
        }
    }

    private QueuePairProxy pairFor(int queueIndex) {
        int qp = queueIndex / 2;
        if (queueIndex < 0 || qp >= pairs.length) {
            throw new IllegalArgumentException("vring " + queueIndex + " out of range (" + pairs.length
                    + " queue pairs)");
        }
        return pairs[qp];
    }

    private static int role(int queueIndex) {
        return queueIndex & 1;
    }

    @Override
    public void startRing(int queueIndex, RingSetup ring) {
        QueuePairProxy p = pairFor(queueIndex);
        p.attach();
        p.startRing(role(queueIndex), ring);
        if (role(queueIndex) == QueuePair.RX && p.queuePair() > 0) {
            tap.setQueueEnabled(p.queuePair(), ring.enabled());
        }
    }

    @Override
    public int stopRing(int queueIndex) {
        QueuePairProxy p = pairFor(queueIndex);
        int base = p.stopRing(role(queueIndex));
        if (role(queueIndex) == QueuePair.RX && p.queuePair() > 0) {
            tap.setQueueEnabled(p.queuePair(), false);
        }
        return base;
    }

    @Override
    public void setRingEnabled(int queueIndex, boolean enabled) {
        QueuePairProxy p = pairFor(queueIndex);
        p.setRingEnabled(role(queueIndex), enabled);
        if (role(queueIndex) == QueuePair.RX && p.queuePair() > 0 && p.ringStarted(QueuePair.RX)) {
            tap.setQueueEnabled(p.queuePair(), enabled);
        }
    }

    @Override
    public void setCallFd(int queueIndex, int callFd) {
        pairFor(queueIndex).setCallFd(role(queueIndex), callFd);
    }

    @Override
    public void setErrFd(int queueIndex, int errFd) {
        pairFor(queueIndex).setErrFd(role(queueIndex), errFd);
    }

    @Override
    public boolean sendRarp(byte[] rarpMac) {
        if (rarpMac == null || rarpMac.length != VirtioNetConfig.MAC_LENGTH) {
            return false;
        }
        int hdr = tap.hdrSize();
        byte[] frame = Frames.rarp(rarpMac);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment seg = a.allocate(hdr + frame.length);
            MemorySegment.copy(frame, 0, seg, ValueLayout.JAVA_BYTE, hdr, frame.length);
            return Fds.write(tap.fd(0), seg, seg.byteSize()) > 0;
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "{0}: RARP not sent: {1}; after a migration the network learns"
                    + " the guest's MAC from its next frame instead (or reload its driver to announce it)",
                    config.name(), e.getMessage());
            return false;
        }
    }

    @Override
    public boolean setMtu(int newMtu) {
        if (VirtioNetConfig.checkMtu(newMtu) != null) {
            return false;
        }
        this.mtu = newMtu;
        long f = features;
        for (QueuePairProxy p : pairs) {
            p.setFeatures(f, newMtu);
        }
        return true;
    }

    public int mtu() {
        return mtu;
    }

    @Override
    public VirtioNetConfig config() {
        return new VirtioNetConfig(mac, VirtioNetConfig.STATUS_LINK_UP, pairs.length, mtu);
    }

    @Override
    public boolean setMac(byte[] newMac) {
        if (newMac == null || newMac.length != VirtioNetConfig.MAC_LENGTH) {
            return false;
        }
        this.mac = newMac.clone();
        return true;
    }

    /** Stops every pair and takes it off its worker (the front-end's session ended). */
    @Override
    public void reset() {
        RuntimeException failure = null;
        for (QueuePairProxy p : pairs) {
            try {
                p.reset();
            } catch (RuntimeException e) {
                failure = failure == null ? e : failure;
            } finally {
                // Off the worker even when the reset failed: a session's end must never leave a pair behind.
                detachQuietly(p);
            }
            if (p.queuePair() > 0) {
                tap.setQueueEnabled(p.queuePair(), false);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    private static void detachQuietly(QueuePairProxy p) {
        try {
            p.detach();
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, p.name() + ": could not leave its worker", e);
        }
    }

    @Override
    public void close() {
        for (QueuePairProxy p : pairs) {
            try {
                p.reset();
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: reset at close: {1}", p.name(), e.getMessage());
            }
            detachQuietly(p);
        }
        if (ownPool) {
            pool.close();
        }
        for (QueuePairProxy p : pairs) {
            if (!p.attached()) {
                p.free();
            }
        }
        if (capture != null) {
            try {
                capture.close();
            } catch (IOException | RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: capture: {1}; the capture file may be incomplete",
                        config.name(), e.getMessage());
            }
        }
        tap.close();
    }
}
