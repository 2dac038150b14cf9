package io.jvhost.engine;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.memory.GuestMemory;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.vhostuser.DeviceBackend;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.vhostuser.VhostUserServer;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.RingSetup;

import java.util.concurrent.ThreadLocalRandom;

/**
 * A one-queue-pair device for unit tests (no root) whose "tap" is a socket the test passes in, and
 * whose pair runs on a shared {@link WorkerPool} the way NetDevice's do: it joins a worker when the
 * front-end starts its first ring and leaves at the session's end (reset). Served over a real
 * vhost-user socket.
 */
final class PoolDevice implements DeviceBackend {
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);

    final String name;
    final QueuePairProxy pair;
    final String path = "/tmp/jvhost-pool-" + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".sock";
    final VhostUserServer server;

    /** @param tapFd non-blocking socket standing in for the tap (owned by the caller) */
    PoolDevice(String name, WorkerPool pool, int tapFd) {
        this(name, pool, tapFd, WorkerConfig.defaults().weight());
    }

    /** @param weight frames per ring per worker cycle */
    PoolDevice(String name, WorkerPool pool, int tapFd, int weight) {
        this.name = name;
        this.pair = new QueuePairProxy(pool, name, new QueuePair(name, 0, tapFd, weight, 32768));
        this.server = VhostUserServer.listen(name, path, this, FeatureSet.all());
    }

    @Override
    public long features() {
        long f = 0;
        for (int b : new int[] {VirtioFeatures.NET_F_MAC, VirtioFeatures.NET_F_MRG_RXBUF, VirtioFeatures.NET_F_STATUS,
                VirtioFeatures.RING_F_INDIRECT_DESC, VirtioFeatures.RING_F_EVENT_IDX,
                VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES, VirtioFeatures.F_VERSION_1}) {
            f |= 1L << b;
        }
        return f;
    }

    @Override
    public int maxQueuePairs() {
        return 1;
    }

    @Override
    public void onFeaturesSet(long f) {
        pair.setFeatures(f, 1500);
    }

    @Override
    public void onMemoryTable(GuestMemory memory) {
        pair.setMemory(memory);
    }

    @Override
    public void startRing(int q, RingSetup ring) {
        pair.attach();
        pair.startRing(q & 1, ring);
    }

    @Override
    public int stopRing(int q) {
        return pair.stopRing(q & 1);
    }

    @Override
    public void setRingEnabled(int q, boolean on) {
        pair.setRingEnabled(q & 1, on);
    }

    @Override
    public void setCallFd(int q, int fd) {
        pair.setCallFd(q & 1, fd);
    }

    @Override
    public void setErrFd(int q, int fd) {
        pair.setErrFd(q & 1, fd);
    }

    @Override
    public boolean sendRarp(byte[] mac) {
        return false;
    }

    @Override
    public boolean setMtu(int mtu) {
        return true;
    }

    @Override
    public VirtioNetConfig config() {
        return new VirtioNetConfig(new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56}, VirtioNetConfig.STATUS_LINK_UP, 1, 1500);
    }

    @Override
    public boolean setMac(byte[] mac) {
        return true;
    }

    @Override
    public void reset() {
        try {
            pair.reset();
        } finally {
            pair.detach();
        }
    }

    @Override
    public void close() {
        server.close();
        reset();
        pair.free();
    }

    /** The Java guest of one session: memfd RAM, NIC, vhost-user client. */
    static final class Guest implements AutoCloseable {
        final DriverMemory mem;
        final GuestNic nic;
        final VhostUserClient client;

        Guest(PoolDevice dev, int ring) {
            long ram = GuestNic.ramNeeded(1, ring, 1514, FEATURES);
            mem = DriverMemory.memfd(dev.name + "-guest", ram, DriverMemory.DEFAULT_GPA_BASE);
            nic = new GuestNic(mem, 1, FEATURES, ring, 1514);
            client = VhostUserClient.connect(dev.path);
            nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
        }

        @Override
        public void close() {
            client.close();
            nic.close();
            mem.close();
        }
    }
}
