package io.jvhost.bench.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.driver.RingOptions;
import java.util.List;
import org.junit.jupiter.api.Test;

/** --rings: contender names, and testpmd's virtio-user told the rings explicitly. */
class RingsTest {
    @Test
    void contenderNamesCarryTheRingsExceptSplit() {
        assertEquals("dpdk", new VhostContender(new Dpdk.Backend(), new Dpdk.FrontEnd(), RingOptions.SPLIT).name());
        assertEquals("dpdk+packed", new VhostContender(new Dpdk.Backend(), new Dpdk.FrontEnd(),
                RingOptions.parse("packed")).name());
        assertEquals("jvhost-bp+split-inorder", new VhostContender(new Jvhost.Backend(List.of("jvhost"), 5, null),
                new Jvhost.DriverFrontEnd(), RingOptions.parse("split-inorder")).name());
    }

    @Test
    void virtioUserGetsPackedVqAndInOrderAlways() {
        assertTrue(Dpdk.virtioUserVdev("/s", RingOptions.SPLIT).endsWith(",packed_vq=0,in_order=0"));
        assertTrue(Dpdk.virtioUserVdev("/s", RingOptions.parse("packed")).endsWith(",packed_vq=1,in_order=0"));
        assertTrue(Dpdk.virtioUserVdev("/s", RingOptions.parse("split-inorder")).endsWith(",packed_vq=0,in_order=1"));
        assertTrue(Dpdk.virtioUserVdev("/s", RingOptions.parse("packed-inorder")).endsWith(",packed_vq=1,in_order=1"));
    }
}
