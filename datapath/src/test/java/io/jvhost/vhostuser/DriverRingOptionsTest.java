package io.jvhost.vhostuser;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.RingOptions;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.PackedEvent;
import io.jvhost.virtq.RingLayout;

import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Java driver's ring options over jvhost's own vhost-user session: a driver that asks for
 * packed rings or IN_ORDER from a device that does not offer them fails with a message naming what
 * is missing, before SET_FEATURES (no fallback to split); a device that offers them gets the packed
 * areas in SET_VRING_ADDR and the packed base (slot | wrap counter &lt;&lt; 15) in SET_VRING_BASE.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DriverRingOptionsTest {
    private static final long BASE_FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);

    private static String socketPath() {
        return "/tmp/jvhost-test-" + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".sock";
    }

    @ParameterizedTest
    @ValueSource(strings = {"packed", "split-inorder", "packed-inorder"})
    void askingForRingsTheDeviceLacksFailsBeforeSetFeatures(String id) {
        RingOptions rings = RingOptions.parse(id);
        long features = rings.applyTo(BASE_FEATURES);
        RecordingBackend backend = new RecordingBackend(VirtioFeatures.SUPPORTED & ~RingOptions.RING_BITS, 1);
        String path = socketPath();
        VhostUserServer server = VhostUserServer.listen("rings", path, backend, FeatureSet.all());
        try (server;
             DriverMemory mem = DriverMemory.memfd("guest", GuestNic.ramNeeded(1, 64, 1514, features), DriverMemory.DEFAULT_GPA_BASE);
             GuestNic nic = new GuestNic(mem, 1, features, 64, 1514);
             VhostUserClient client = VhostUserClient.connect(path)) {
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED));
            assertTrue(e.getMessage().contains("does not offer"), e.getMessage());
            assertTrue(e.getMessage().contains("does not fall back"), e.getMessage());
            assertEquals(rings.layout() == RingLayout.PACKED, e.getMessage().contains("VIRTIO_F_RING_PACKED"), e.getMessage());
            assertEquals(rings.inOrder(), e.getMessage().contains("VIRTIO_F_IN_ORDER"), e.getMessage());
            assertFalse(backend.events().stream().anyMatch(x -> x.startsWith("features")),
                    "SET_FEATURES was never sent: " + backend.events());
            // In process (the demo's path) the same check, before the device hears of any feature.
            IllegalStateException e2 = assertThrows(IllegalStateException.class, () -> nic.attach(backend, mem.guestMemory(1)));
            assertEquals(RingOptions.missing(features, backend.features()), e2.getMessage());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"packed", "packed-inorder"})
    void packedRingsAreSetUpWithTheirAreasAndBase(String id) {
        RingOptions rings = RingOptions.parse(id);
        long features = rings.applyTo(BASE_FEATURES);
        // A device that offers the ring bits (jvhost's session masks them out until its packed rings land).
        long offered = VirtioFeatures.SUPPORTED | RingOptions.RING_BITS;
        RecordingBackend backend = new RecordingBackend(offered, 1);
        int ring = 257; // packed sizes need not be powers of two
        String path = socketPath();
        VhostUserServer server = VhostUserServer.listen("rings", path, backend,
                new FeatureSet(offered, VhostUserMessage.PROTOCOL_SUPPORTED));
        try (server;
             DriverMemory mem = DriverMemory.memfd("guest", GuestNic.ramNeeded(1, ring, 1514, features), DriverMemory.DEFAULT_GPA_BASE);
             GuestNic nic = new GuestNic(mem, 1, features, ring, 1514);
             VhostUserClient client = VhostUserClient.connect(path)) {
            long ack = nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
            assertEquals(rings.features(), ack & RingOptions.RING_BITS);
            ProtocolFixture.awaitTrue(() -> backend.isRunning(0) && backend.isRunning(1), 5000, "both rings started");
            for (int q = 0; q < 2; q++) {
                StartedRing r = backend.ring(q);
                assertEquals(RingLayout.PACKED, r.setup().layout());
                assertEquals(ring, r.size());
                assertEquals(PackedEvent.offWrap(0, true), r.setup().base(), "slot 0, wrap counter 1");
                assertEquals(null, RingLayout.PACKED.checkAlignment(r.setup().desc(), r.setup().driver(), r.setup().device()));
                assertTrue(r.setup().driver() >= r.setup().desc() + 16L * ring, "driver event area after the ring");
                assertTrue(r.setup().device() >= r.setup().driver() + PackedEvent.SIZE, "device event area after it");
            }
        }
    }

    @Test
    void namesRoundTrip() {
        for (RingOptions r : RingOptions.ALL) {
            assertEquals(r, RingOptions.parse(r.id()));
            assertEquals(r, RingOptions.of(r.applyTo(BASE_FEATURES)));
        }
        assertEquals(RingOptions.ALL, RingOptions.parseList("split,packed,split-inorder,packed-inorder"));
        assertThrows(IllegalArgumentException.class, () -> RingOptions.parse("ring"));
        assertEquals(null, RingOptions.SPLIT.unsupportedBy(0));
    }
}
