package io.jvhost.vhostuser;

import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.memory.GuestMemory;
import io.jvhost.virtq.RingSetup;

/**
 * The device behind a vhost-user socket, as seen by the protocol {@link Session}: the net area
 * implements it with a tap and queue-pair workers; tests use an in-memory recorder.
 *
 * <h2>Threading rule</h2>
 * Every method is called on the owning session's control thread ({@code jvhost-<dev>-ctl}), one at a
 * time, never concurrently. A method that changes what a worker uses (ring start/stop, memory table,
 * enable flag, call/err fd, features, reset) returns only after the worker has quiesced and picked up
 * the change: when it returns, the session may close the fds and unmap the memory the worker used
 * before. Implementations must not block indefinitely (a stuck worker is a broken device, not a
 * stuck control thread).
 *
 * <h2>Ownership</h2>
 * File descriptors (kick, call, err) and {@link GuestMemory} tables are owned by the session: they
 * stay valid until the call that replaces them (or {@link #stopRing}, {@link #reset}) has returned,
 * and the backend never closes them. A backend that needs an fd longer must {@code dup} it.
 *
 * <h2>Errors</h2>
 * Guest-controlled values have been validated by the session before any call here (queue index in
 * range, ring size and base valid for the ring format, ring areas aligned and inside the memory table). A backend that still
 * finds a problem throws {@link IllegalArgumentException}; the session turns it into an error reply
 * without applying anything else.
 */
public interface DeviceBackend extends AutoCloseable {

    /** Virtio feature bits the device can offer (see {@link VirtioFeatures}); the session masks them with its {@link FeatureSet}. */
    long features();

    /** Number of queue pairs the device supports (vrings = 2 × this; RX is even, TX is odd). */
    int maxQueuePairs();

    /**
     * The front-end acknowledged these virtio features (already a subset of what was offered). May
     * arrive while rings run, but then only with the features they started with (a change is refused).
     */
    void onFeaturesSet(long features);

    /**
     * A new memory table. Rings that are running keep their front-end addresses and must be
     * re-translated against {@code memory}; the session has stopped every running ring that
     * {@code memory} does not cover, so the re-translation of a running ring never fails. When this
     * returns no worker touches the previous table any more; the session then closes it.
     */
    void onMemoryTable(GuestMemory memory);

    /**
     * Start processing vring {@code queueIndex} on the current memory table (the last
     * {@link #onMemoryTable}). The ring is not running when this is called.
     */
    void startRing(int queueIndex, RingSetup ring);

    /**
     * Stop a running ring (VHOST_USER_GET_VRING_BASE) and return the available index the next start
     * must use ("last avail idx"), so nothing is lost or replayed. Returns after the worker stopped
     * touching the ring.
     */
    int stopRing(int queueIndex);

    /** Enable or disable a running ring. A started but disabled ring consumes and drops TX, supplies no RX. */
    void setRingEnabled(int queueIndex, boolean enabled);

    /** Replace the call eventfd of a running ring ({@code -1}: no interrupts). */
    void setCallFd(int queueIndex, int callFd);

    /** Replace the error eventfd of a running ring ({@code -1}: none). */
    void setErrFd(int queueIndex, int errFd);

    /** Broadcast a gratuitous RARP for {@code mac} (6 bytes) after migration; false if the device cannot. */
    boolean sendRarp(byte[] mac);

    /** The front-end sets the MTU exposed to the guest; false if the value is not acceptable. */
    boolean setMtu(int mtu);

    /** Current device configuration space contents (MAC, status, max queue pairs, MTU). */
    VirtioNetConfig config();

    /** The driver wrote the MAC in config space; false if refused. */
    boolean setMac(byte[] mac);

    /** Stop every ring and forget per-connection state (RESET_DEVICE or disconnect). The device stays usable. */
    void reset();

    /** The device goes away (process shutdown); called after {@link #reset()}. */
    @Override
    void close();
}
