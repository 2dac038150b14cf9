package io.jvhost.vhostuser;

import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtio.VirtioFeatures;
import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

/** Layout constants and value classes. */
class DescriptorsTest {

    @Test
    void messageLayoutsMatchTheSpec() {
        assertEquals(12, VhostUserMessage.HEADER_SIZE);
        assertEquals(8, VhostUserMessage.STATE_SIZE);
        assertEquals(40, VhostUserMessage.ADDR_SIZE);
        assertEquals(32, VhostUserMessage.REGION_SIZE);
        assertEquals(40, VhostUserMessage.SINGLE_REGION_SIZE);
        assertEquals(8 + 8 * 32, VhostUserMessage.MEM_REGIONS_OFFSET + VhostUserMessage.MEM_MAX_REGIONS
                * VhostUserMessage.REGION_SIZE);
        assertEquals(12 + 256, VhostUserMessage.MAX_PAYLOAD);
        assertEquals("GET_VRING_BASE", VhostUserMessage.requestName(VhostUserMessage.GET_VRING_BASE));
        assertEquals("UNKNOWN(99)", VhostUserMessage.requestName(99));
        assertTrue(VhostUserMessage.hasReply(VhostUserMessage.GET_CONFIG));
        assertFalse(VhostUserMessage.hasReply(VhostUserMessage.SET_MEM_TABLE));
    }

    @Test
    void offeredFeaturesAreExactlyTheListedOnes() {
        long s = VirtioFeatures.SUPPORTED;
        for (int bit : new int[] {VirtioFeatures.F_VERSION_1, VirtioFeatures.F_ANY_LAYOUT, VirtioFeatures.RING_F_INDIRECT_DESC,
                VirtioFeatures.RING_F_EVENT_IDX, VirtioFeatures.F_RING_PACKED, VirtioFeatures.F_IN_ORDER,
                VirtioFeatures.NET_F_MRG_RXBUF, VirtioFeatures.NET_F_CSUM,
                VirtioFeatures.NET_F_GUEST_CSUM, VirtioFeatures.NET_F_GUEST_TSO4, VirtioFeatures.NET_F_GUEST_TSO6,
                VirtioFeatures.NET_F_GUEST_ECN, VirtioFeatures.NET_F_GUEST_UFO, VirtioFeatures.NET_F_HOST_TSO4,
                VirtioFeatures.NET_F_HOST_TSO6, VirtioFeatures.NET_F_HOST_ECN, VirtioFeatures.NET_F_HOST_UFO,
                VirtioFeatures.NET_F_MQ, VirtioFeatures.NET_F_MTU, VirtioFeatures.NET_F_STATUS,
                VirtioFeatures.NET_F_GUEST_ANNOUNCE, VirtioFeatures.NET_F_MAC, VirtioFeatures.NET_F_HOST_USO,
                VirtioFeatures.NET_F_GUEST_USO4, VirtioFeatures.NET_F_GUEST_USO6, VirtioFeatures.F_LOG_ALL,
                VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES}) {
            assertTrue(VirtioFeatures.has(s, bit), "bit " + bit);
            s &= ~(1L << bit);
        }
        assertEquals(0, s, "nothing else: " + VirtioFeatures.describe(s));
        assertEquals("csum,bit63", VirtioFeatures.describe(1L | 1L << 63));
        long p = VhostUserMessage.PROTOCOL_SUPPORTED;
        for (int bit : new int[] {VhostUserMessage.PROTOCOL_F_MQ, VhostUserMessage.PROTOCOL_F_REPLY_ACK,
                VhostUserMessage.PROTOCOL_F_MTU, VhostUserMessage.PROTOCOL_F_RARP, VhostUserMessage.PROTOCOL_F_CONFIG,
                VhostUserMessage.PROTOCOL_F_CONFIGURE_MEM_SLOTS, VhostUserMessage.PROTOCOL_F_RESET_DEVICE,
                VhostUserMessage.PROTOCOL_F_LOG_SHMFD, VhostUserMessage.PROTOCOL_F_STATUS}) {
            p &= ~(1L << bit);
        }
        assertEquals(0, p);
    }

    @Test
    void netConfigRoundTripsLittleEndian() {
        VirtioNetConfig c = new VirtioNetConfig(VirtioNetConfig.parseMac("52:54:00:ab:cd:ef"), 3, 4, 9000);
        MemorySegment s = MemorySegment.ofArray(new byte[VirtioNetConfig.SIZE]);
        c.writeTo(s);
        byte[] b = s.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        assertEquals((byte) 0x52, b[0]);
        assertEquals(3, b[6]);
        assertEquals(4, b[8]);
        assertEquals((byte) 0x28, b[10]); // 9000 = 0x2328, little-endian
        assertEquals((byte) 0x23, b[11]);
        assertEquals(c, VirtioNetConfig.readFrom(s));
        assertEquals("52:54:00:ab:cd:ef", VirtioNetConfig.formatMac(c.mac()));
        assertThrows(IllegalArgumentException.class, () -> new VirtioNetConfig(new byte[5], 0, 1, 1500));
        assertThrows(IllegalArgumentException.class, () -> VirtioNetConfig.parseMac("52:54:00"));
    }

    @Test
    void featureSetSwitches() {
        FeatureSet f = FeatureSet.all().without("event-idx, mrg-rxbuf", null, "proto-reply-ack");
        assertFalse(VirtioFeatures.has(f.virtio(), VirtioFeatures.RING_F_EVENT_IDX));
        assertFalse(VirtioFeatures.has(f.virtio(), VirtioFeatures.NET_F_MRG_RXBUF));
        assertTrue(VirtioFeatures.has(f.virtio(), VirtioFeatures.F_VERSION_1));
        assertEquals(0, f.protocol() & (1L << VhostUserMessage.PROTOCOL_F_REPLY_ACK));
        assertTrue(f.protocolFeatures());
        assertFalse(FeatureSet.all().without("protocol-features").protocolFeatures());
    }
}
