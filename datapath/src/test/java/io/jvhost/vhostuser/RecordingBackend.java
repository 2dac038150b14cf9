package io.jvhost.vhostuser;

import io.jvhost.virtq.RingSetup;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * In-memory {@link DeviceBackend} for protocol tests: records every call, keeps per-ring state, and
 * "consumes" {@link #advance} descriptors per ring so GET_VRING_BASE answers base + advance. Checks
 * that every fd it is handed is open. Calls arrive on the control thread; tests read from another,
 * so everything is synchronized.
 */
final class RecordingBackend implements DeviceBackend {
    final long features;
    final int pairs;
    private final List<String> events = new ArrayList<>();
    private final Map<Integer, StartedRing> running = new HashMap<>();
    private final Map<Integer, Boolean> enabled = new HashMap<>();
    private final Map<Integer, Integer> callFds = new HashMap<>();
    private final Map<Integer, Integer> advance = new HashMap<>();
    private VirtioNetConfig config;
    private GuestMemory memory;
    private long ackedFeatures;
    private int resets;
    volatile boolean refuseStart;
    volatile boolean refuseCall;
    private String fdProblem;

    RecordingBackend(int pairs) {
        this(VirtioFeatures.SUPPORTED, pairs);
    }

    RecordingBackend(long features, int pairs) {
        this.features = features;
        this.pairs = pairs;
        this.config = new VirtioNetConfig(new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56},
                VirtioNetConfig.STATUS_LINK_UP, pairs, 1500);
    }

    private void checkFd(String what, int fd) {
        if (fd >= 0 && !Files.exists(Path.of("/proc/self/fd/" + fd))) {
            fdProblem = what + " fd " + fd + " is not open";
        }
    }

    private void log(String e) {
        events.add(e);
        notifyAll();
    }

    @Override
    public long features() {
        return features;
    }

    @Override
    public int maxQueuePairs() {
        return pairs;
    }

    @Override
    public synchronized void onFeaturesSet(long f) {
        ackedFeatures = f;
        log("features " + Long.toHexString(f));
    }

    @Override
    public synchronized void onMemoryTable(GuestMemory m) {
        for (StartedRing r : running.values()) {
            if (!covers(m, r)) {
                fdProblem = "running ring " + r.queueIndex() + " is not covered by the new memory table";
            }
        }
        memory = m;
        log("mem " + m.regionCount());
    }

    @Override
    public synchronized void startRing(int queueIndex, RingSetup setup) {
        StartedRing ring = new StartedRing(queueIndex, setup, memory);
        if (refuseStart) {
            throw new IllegalArgumentException("refused by test");
        }
        if (running.containsKey(ring.queueIndex())) {
            fdProblem = "ring " + ring.queueIndex() + " started twice";
        }
        checkFd("kick", ring.kickFd());
        checkFd("call", ring.callFd());
        checkFd("err", ring.errFd());
        if (!covers(ring.memory(), ring) || ring.memory() != memory) {
            fdProblem = "ring " + ring.queueIndex() + " started outside the current memory table";
        }
        running.put(ring.queueIndex(), ring);
        enabled.put(ring.queueIndex(), ring.enabled());
        callFds.put(ring.queueIndex(), ring.callFd());
        log("start " + ring.queueIndex() + " base " + ring.baseIndex() + (ring.polled() ? " polled" : " kicked")
                + (ring.enabled() ? " enabled" : " disabled"));
    }

    @Override
    public synchronized int stopRing(int q) {
        StartedRing r = running.remove(q);
        if (r == null) {
            fdProblem = "stop of ring " + q + " that is not running";
            return 0;
        }
        int base = (r.baseIndex() + advance.getOrDefault(q, 0)) & 0xffff;
        advance.remove(q);
        log("stop " + q + " at " + base);
        return base;
    }

    @Override
    public synchronized void setRingEnabled(int q, boolean on) {
        if (!running.containsKey(q)) {
            fdProblem = "enable of ring " + q + " that is not running";
        }
        enabled.put(q, on);
        log("enable " + q + " " + on);
    }

    /** Whether all three ring structures (with their event trailers, as the virtqueue maps them) lie in {@code m}. */
    static boolean covers(GuestMemory m, StartedRing r) {
        return m != null && m.uvaToHost(r.descAddr(), VringDesc.tableSize(r.size())) != GuestMemory.NO_ADDR
                && m.uvaToHost(r.availAddr(), VringAvail.sizeOf(r.size())) != GuestMemory.NO_ADDR
                && m.uvaToHost(r.usedAddr(), VringUsed.sizeOf(r.size())) != GuestMemory.NO_ADDR;
    }

    @Override
    public synchronized void setCallFd(int q, int fd) {
        if (refuseCall) {
            throw new IllegalArgumentException("call fd refused by test");
        }
        checkFd("call", fd);
        callFds.put(q, fd);
        log("call " + q);
    }

    @Override
    public synchronized void setErrFd(int q, int fd) {
        checkFd("err", fd);
        log("err " + q);
    }

    @Override
    public synchronized boolean sendRarp(byte[] mac) {
        log("rarp " + VirtioNetConfig.formatMac(mac));
        return true;
    }

    @Override
    public synchronized boolean setMtu(int mtu) {
        if (mtu > 9000) {
            return false;
        }
        config = config.withMtu(mtu);
        log("mtu " + mtu);
        return true;
    }

    @Override
    public synchronized VirtioNetConfig config() {
        return config;
    }

    @Override
    public synchronized boolean setMac(byte[] mac) {
        config = config.withMac(mac);
        log("mac " + VirtioNetConfig.formatMac(mac));
        return true;
    }

    @Override
    public synchronized void reset() {
        running.clear();
        enabled.clear();
        callFds.clear();
        memory = null;
        resets++;
        log("reset");
    }

    @Override
    public synchronized void close() {
        log("close");
    }

    // ---- test accessors ----

    synchronized void advance(int q, int n) {
        advance.put(q, n);
    }

    synchronized boolean isRunning(int q) {
        return running.containsKey(q);
    }

    synchronized StartedRing ring(int q) {
        return running.get(q);
    }

    synchronized Boolean enabled(int q) {
        return enabled.get(q);
    }

    synchronized int resets() {
        return resets;
    }

    synchronized long ackedFeatures() {
        return ackedFeatures;
    }

    synchronized GuestMemory memory() {
        return memory;
    }

    synchronized List<String> events() {
        return new ArrayList<>(events);
    }

    synchronized String fdProblem() {
        return fdProblem;
    }

    synchronized Integer callFd(int q) {
        return callFds.get(q);
    }

    synchronized int runningCount() {
        return running.size();
    }

    /** Waits until an event equal to {@code e} was recorded. */
    synchronized void awaitEvent(String e, long timeoutMs) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMs;
        while (!events.contains(e)) {
            long left = end - System.currentTimeMillis();
            if (left <= 0) {
                throw new AssertionError("event '" + e + "' not seen; events: " + events);
            }
            wait(left);
        }
    }

    synchronized void awaitResets(int n, long timeoutMs) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMs;
        while (resets < n) {
            long left = end - System.currentTimeMillis();
            if (left <= 0) {
                throw new AssertionError("only " + resets + " resets; events: " + events);
            }
            wait(left);
        }
    }
}
