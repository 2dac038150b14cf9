package io.jvhost.layout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.driver.NetBufferLayout;
import io.jvhost.nativ.gen.Linux;
import io.jvhost.nativ.gen.iovec;
import io.jvhost.nativ.gen.vhost_memory;
import io.jvhost.nativ.gen.vhost_memory_region;
import io.jvhost.nativ.gen.vhost_vring_addr;
import io.jvhost.nativ.gen.vhost_vring_state;
import io.jvhost.nativ.gen.virtio_net_config;
import io.jvhost.nativ.gen.virtio_net_hdr;
import io.jvhost.nativ.gen.virtio_net_hdr_mrg_rxbuf;
import io.jvhost.nativ.gen.virtio_net_hdr_v1;
import io.jvhost.nativ.gen.vring_avail;
import io.jvhost.nativ.gen.vring_desc;
import io.jvhost.nativ.gen.vring_packed_desc;
import io.jvhost.nativ.gen.vring_packed_desc_event;
import io.jvhost.nativ.gen.vring_used;
import io.jvhost.nativ.gen.vring_used_elem;
import io.jvhost.net.NativeMemory;
import io.jvhost.net.VirtioNetConfig;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.virtq.PackedDesc;
import io.jvhost.virtq.PackedEvent;
import io.jvhost.virtq.RingLayout;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;
import io.jvhost.virtq.VringUsed;
import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * The datapath's hand-written descriptor classes against their kernel twins as jextract generated
 * them from {@code ffi-headers/jvhost.h} (native-bindings' {@code LayoutConformanceTest} checks those
 * against gcc): each named offset against the generated member's byte offset, the width the class
 * reads or writes it with against the member's size, sizes and flag values against the C ones.
 *
 * <p>The descriptor classes keep their own constants (they are compile-time constants on the hot
 * path and name the memory order next to the offset); this test is what makes the generated layout
 * the one source of truth for them. One test per descriptor class.
 */
class HandWrittenLayoutsTest {

    private static final ValueLayout U8 = ValueLayout.JAVA_BYTE;

    @Test
    void packedDesc() {
        assertEquals(vring_packed_desc.sizeof(), PackedDesc.SIZE, "sizeof(struct vring_packed_desc)");
        field("vring_packed_desc.addr", vring_packed_desc.addr$offset(), vring_packed_desc.addr$layout(),
                PackedDesc.ADDR_OFFSET, VringDesc.LE_LONG);
        field("vring_packed_desc.len", vring_packed_desc.len$offset(), vring_packed_desc.len$layout(),
                PackedDesc.LEN_OFFSET, VringDesc.LE_INT);
        field("vring_packed_desc.id", vring_packed_desc.id$offset(), vring_packed_desc.id$layout(),
                PackedDesc.ID_OFFSET, VringDesc.LE_SHORT);
        field("vring_packed_desc.flags", vring_packed_desc.flags$offset(), vring_packed_desc.flags$layout(),
                PackedDesc.FLAGS_OFFSET, VringDesc.LE_SHORT);
        // linux/virtio_ring.h gives AVAIL and USED as bit numbers
        assertEquals(1 << Linux.VRING_PACKED_DESC_F_AVAIL(), PackedDesc.F_AVAIL, "1 << VRING_PACKED_DESC_F_AVAIL");
        assertEquals(1 << Linux.VRING_PACKED_DESC_F_USED(), PackedDesc.F_USED, "1 << VRING_PACKED_DESC_F_USED");
        assertEquals(Linux.VRING_DESC_F_NEXT(), PackedDesc.F_NEXT, "VRING_DESC_F_NEXT");
        assertEquals(Linux.VRING_DESC_F_WRITE(), PackedDesc.F_WRITE, "VRING_DESC_F_WRITE");
        assertEquals(Linux.VRING_DESC_F_INDIRECT(), PackedDesc.F_INDIRECT, "VRING_DESC_F_INDIRECT");
        for (int n : new int[] {1, 255, 256, 32768}) {
            assertEquals(vring_packed_desc.sizeof() * n, RingLayout.PACKED.descBytes(n), "packed ring of " + n);
        }
    }

    @Test
    void packedEvent() {
        assertEquals(vring_packed_desc_event.sizeof(), PackedEvent.SIZE, "sizeof(struct vring_packed_desc_event)");
        field("vring_packed_desc_event.off_wrap", vring_packed_desc_event.off_wrap$offset(),
                vring_packed_desc_event.off_wrap$layout(), PackedEvent.OFF_WRAP_OFFSET, VringDesc.LE_SHORT);
        field("vring_packed_desc_event.flags", vring_packed_desc_event.flags$offset(),
                vring_packed_desc_event.flags$layout(), PackedEvent.FLAGS_OFFSET, VringDesc.LE_SHORT);
        assertEquals(Linux.VRING_PACKED_EVENT_FLAG_ENABLE(), PackedEvent.FLAG_ENABLE, "VRING_PACKED_EVENT_FLAG_ENABLE");
        assertEquals(Linux.VRING_PACKED_EVENT_FLAG_DISABLE(), PackedEvent.FLAG_DISABLE, "VRING_PACKED_EVENT_FLAG_DISABLE");
        assertEquals(Linux.VRING_PACKED_EVENT_FLAG_DESC(), PackedEvent.FLAG_DESC, "VRING_PACKED_EVENT_FLAG_DESC");
        assertEquals(Linux.VRING_PACKED_EVENT_F_WRAP_CTR(), PackedEvent.WRAP_SHIFT, "VRING_PACKED_EVENT_F_WRAP_CTR");
        assertEquals(PackedEvent.SIZE, RingLayout.PACKED.driverBytes(256));
        assertEquals(PackedEvent.SIZE, RingLayout.PACKED.deviceBytes(256));
    }

    @Test
    void vringDesc() {
        assertEquals(vring_desc.sizeof(), VringDesc.SIZE, "sizeof(struct vring_desc)");
        assertEquals(Linux.VRING_DESC_ALIGN_SIZE(), VringDesc.ALIGN, "VRING_DESC_ALIGN_SIZE");
        field("vring_desc.addr", vring_desc.addr$offset(), vring_desc.addr$layout(), VringDesc.ADDR_OFFSET, VringDesc.LE_LONG);
        field("vring_desc.len", vring_desc.len$offset(), vring_desc.len$layout(), VringDesc.LEN_OFFSET, VringDesc.LE_INT);
        field("vring_desc.flags", vring_desc.flags$offset(), vring_desc.flags$layout(), VringDesc.FLAGS_OFFSET,
                VringDesc.LE_SHORT);
        field("vring_desc.next", vring_desc.next$offset(), vring_desc.next$layout(), VringDesc.NEXT_OFFSET, VringDesc.LE_SHORT);
        assertEquals(Linux.VRING_DESC_F_NEXT(), VringDesc.F_NEXT, "VRING_DESC_F_NEXT");
        assertEquals(Linux.VRING_DESC_F_WRITE(), VringDesc.F_WRITE, "VRING_DESC_F_WRITE");
        assertEquals(Linux.VRING_DESC_F_INDIRECT(), VringDesc.F_INDIRECT, "VRING_DESC_F_INDIRECT");
        for (int n : new int[] {1, 256, 32768}) {
            assertEquals(vring_desc.sizeof() * n, VringDesc.tableSize(n), "descriptor table of " + n);
        }
    }

    @Test
    void vringAvail() {
        assertEquals(Linux.VRING_AVAIL_ALIGN_SIZE(), VringAvail.ALIGN, "VRING_AVAIL_ALIGN_SIZE");
        field("vring_avail.flags", vring_avail.flags$offset(), vring_avail.flags$layout(), VringAvail.FLAGS_OFFSET,
                VringDesc.LE_SHORT);
        field("vring_avail.idx", vring_avail.idx$offset(), vring_avail.idx$layout(), VringAvail.IDX_OFFSET,
                VringDesc.LE_SHORT);
        long elem = vring_avail.ring$layout().elementLayout().byteSize();
        assertEquals(vring_avail.ring$offset(), VringAvail.RING_OFFSET, "offset of vring_avail.ring");
        assertEquals(elem, VringAvail.ELEMENT_SIZE, "vring_avail.ring element");
        assertEquals(Linux.VRING_AVAIL_F_NO_INTERRUPT(), VringAvail.F_NO_INTERRUPT, "VRING_AVAIL_F_NO_INTERRUPT");
        for (int n : new int[] {1, 256, 32768}) {
            // used_event is one more ring-sized element after ring[n] (the kernel's vring_used_event).
            assertEquals(vring_avail.ring$offset() + elem * n, VringAvail.usedEventOffset(n), "used_event of " + n);
            assertEquals(vring_avail.sizeof() + elem * (n + 1), VringAvail.sizeOf(n), "avail ring of " + n);
            assertEquals(vring_avail.ring$offset() + elem * (n - 1), VringAvail.ringOffset(n - 1), "last slot of " + n);
        }
    }

    @Test
    void vringUsed() {
        assertEquals(Linux.VRING_USED_ALIGN_SIZE(), VringUsed.ALIGN, "VRING_USED_ALIGN_SIZE");
        field("vring_used.flags", vring_used.flags$offset(), vring_used.flags$layout(), VringUsed.FLAGS_OFFSET,
                VringDesc.LE_SHORT);
        field("vring_used.idx", vring_used.idx$offset(), vring_used.idx$layout(), VringUsed.IDX_OFFSET, VringDesc.LE_SHORT);
        assertEquals(vring_used.ring$offset(), VringUsed.RING_OFFSET, "offset of vring_used.ring");
        assertEquals(vring_used_elem.sizeof(), VringUsed.ELEMENT_SIZE, "sizeof(struct vring_used_elem)");
        assertEquals(vring_used_elem.layout(), vring_used.ring$layout().elementLayout(),
                "vring_used.ring is an array of vring_used_elem");
        field("vring_used_elem.id", vring_used_elem.id$offset(), vring_used_elem.id$layout(), VringUsed.ELEM_ID_OFFSET,
                VringDesc.LE_INT);
        field("vring_used_elem.len", vring_used_elem.len$offset(), vring_used_elem.len$layout(), VringUsed.ELEM_LEN_OFFSET,
                VringDesc.LE_INT);
        assertEquals(Linux.VRING_USED_F_NO_NOTIFY(), VringUsed.F_NO_NOTIFY, "VRING_USED_F_NO_NOTIFY");
        long availEvent = vring_avail.idx$layout().byteSize(); // __virtio16, like the kernel's vring_avail_event
        for (int n : new int[] {1, 256, 32768}) {
            assertEquals(vring_used.ring$offset() + vring_used_elem.sizeof() * n, VringUsed.availEventOffset(n),
                    "avail_event of " + n);
            assertEquals(vring_used.sizeof() + vring_used_elem.sizeof() * n + availEvent, VringUsed.sizeOf(n),
                    "used ring of " + n);
            assertEquals(vring_used.ring$offset() + vring_used_elem.sizeof() * (n - 1), VringUsed.elemOffset(n - 1),
                    "last element of " + n);
        }
    }

    @Test
    void virtioNetHdr() {
        assertEquals(virtio_net_hdr.sizeof(), VirtioNetHdr.LEGACY_SIZE, "sizeof(struct virtio_net_hdr)");
        assertEquals(virtio_net_hdr_mrg_rxbuf.sizeof(), VirtioNetHdr.SIZE, "sizeof(struct virtio_net_hdr_mrg_rxbuf)");
        assertEquals(virtio_net_hdr_v1.sizeof(), VirtioNetHdr.SIZE, "sizeof(struct virtio_net_hdr_v1)");
        field("virtio_net_hdr.flags", virtio_net_hdr.flags$offset(), virtio_net_hdr.flags$layout(),
                VirtioNetHdr.FLAGS_OFFSET, U8);
        field("virtio_net_hdr.gso_type", virtio_net_hdr.gso_type$offset(), virtio_net_hdr.gso_type$layout(),
                VirtioNetHdr.GSO_TYPE_OFFSET, U8);
        field("virtio_net_hdr.hdr_len", virtio_net_hdr.hdr_len$offset(), virtio_net_hdr.hdr_len$layout(),
                VirtioNetHdr.HDR_LEN_OFFSET, VirtioNetHdr.LE16);
        field("virtio_net_hdr.gso_size", virtio_net_hdr.gso_size$offset(), virtio_net_hdr.gso_size$layout(),
                VirtioNetHdr.GSO_SIZE_OFFSET, VirtioNetHdr.LE16);
        field("virtio_net_hdr.csum_start", virtio_net_hdr.csum_start$offset(), virtio_net_hdr.csum_start$layout(),
                VirtioNetHdr.CSUM_START_OFFSET, VirtioNetHdr.LE16);
        field("virtio_net_hdr.csum_offset", virtio_net_hdr.csum_offset$offset(), virtio_net_hdr.csum_offset$layout(),
                VirtioNetHdr.CSUM_OFFSET_OFFSET, VirtioNetHdr.LE16);
        field("virtio_net_hdr_mrg_rxbuf.num_buffers", virtio_net_hdr_mrg_rxbuf.num_buffers$offset(),
                virtio_net_hdr_mrg_rxbuf.num_buffers$layout(), VirtioNetHdr.NUM_BUFFERS_OFFSET, VirtioNetHdr.LE16);
        field("virtio_net_hdr_v1.num_buffers", virtio_net_hdr_v1.num_buffers$offset(),
                virtio_net_hdr_v1.num_buffers$layout(), VirtioNetHdr.NUM_BUFFERS_OFFSET, VirtioNetHdr.LE16);
        // The 12-byte layouts start with the 10-byte one: the same offsets serve both.
        assertEquals(0, virtio_net_hdr_mrg_rxbuf.hdr$offset());
        assertEquals(virtio_net_hdr.csum_offset$offset(), virtio_net_hdr_v1.csum_offset$offset());

        assertEquals(Linux.VIRTIO_NET_HDR_F_NEEDS_CSUM(), VirtioNetHdr.FLAG_NEEDS_CSUM, "VIRTIO_NET_HDR_F_NEEDS_CSUM");
        assertEquals(Linux.VIRTIO_NET_HDR_F_DATA_VALID(), VirtioNetHdr.FLAG_DATA_VALID, "VIRTIO_NET_HDR_F_DATA_VALID");
        assertEquals(Linux.VIRTIO_NET_HDR_F_RSC_INFO(), VirtioNetHdr.FLAG_RSC_INFO, "VIRTIO_NET_HDR_F_RSC_INFO");
        assertEquals(Linux.VIRTIO_NET_HDR_GSO_NONE(), VirtioNetHdr.GSO_NONE, "VIRTIO_NET_HDR_GSO_NONE");
        assertEquals(Linux.VIRTIO_NET_HDR_GSO_TCPV4(), VirtioNetHdr.GSO_TCPV4, "VIRTIO_NET_HDR_GSO_TCPV4");
        assertEquals(Linux.VIRTIO_NET_HDR_GSO_UDP(), VirtioNetHdr.GSO_UDP, "VIRTIO_NET_HDR_GSO_UDP");
        assertEquals(Linux.VIRTIO_NET_HDR_GSO_TCPV6(), VirtioNetHdr.GSO_TCPV6, "VIRTIO_NET_HDR_GSO_TCPV6");
        assertEquals(Linux.VIRTIO_NET_HDR_GSO_UDP_L4(), VirtioNetHdr.GSO_UDP_L4, "VIRTIO_NET_HDR_GSO_UDP_L4");
        assertEquals(Linux.VIRTIO_NET_HDR_GSO_ECN(), VirtioNetHdr.GSO_ECN, "VIRTIO_NET_HDR_GSO_ECN");
    }

    @Test
    void virtioNetConfig() {
        field("virtio_net_config.mac", virtio_net_config.mac$offset(), virtio_net_config.mac$layout(),
                VirtioNetConfig.MAC_OFFSET, MemoryLayout.sequenceLayout(VirtioNetConfig.MAC_LENGTH, U8));
        field("virtio_net_config.status", virtio_net_config.status$offset(), virtio_net_config.status$layout(),
                VirtioNetConfig.STATUS_OFFSET, ValueLayout.JAVA_SHORT);
        field("virtio_net_config.max_virtqueue_pairs", virtio_net_config.max_virtqueue_pairs$offset(),
                virtio_net_config.max_virtqueue_pairs$layout(), VirtioNetConfig.MAX_VIRTQUEUE_PAIRS_OFFSET,
                ValueLayout.JAVA_SHORT);
        field("virtio_net_config.mtu", virtio_net_config.mtu$offset(), virtio_net_config.mtu$layout(),
                VirtioNetConfig.MTU_OFFSET, ValueLayout.JAVA_SHORT);
        field("virtio_net_config.speed", virtio_net_config.speed$offset(), virtio_net_config.speed$layout(),
                VirtioNetConfig.SPEED_OFFSET, ValueLayout.JAVA_INT);
        field("virtio_net_config.duplex", virtio_net_config.duplex$offset(), virtio_net_config.duplex$layout(),
                VirtioNetConfig.DUPLEX_OFFSET, U8);
        // The served space ends after duplex (padded); it must not claim more than the struct has.
        assertTrue(VirtioNetConfig.SIZE >= virtio_net_config.duplex$offset() + 1
                        && VirtioNetConfig.SIZE <= virtio_net_config.sizeof(),
                "SIZE " + VirtioNetConfig.SIZE + " within struct virtio_net_config (" + virtio_net_config.sizeof() + ")");
        assertEquals(Linux.VIRTIO_NET_S_LINK_UP(), VirtioNetConfig.STATUS_LINK_UP, "VIRTIO_NET_S_LINK_UP");
        assertEquals(Linux.VIRTIO_NET_S_ANNOUNCE(), VirtioNetConfig.STATUS_ANNOUNCE, "VIRTIO_NET_S_ANNOUNCE");
    }

    /** VHOST_USER_SET/GET_VRING_NUM, _BASE, _ENABLE payload: the kernel's struct vhost_vring_state. */
    @Test
    void vhostUserVringState() {
        assertEquals(vhost_vring_state.sizeof(), VhostUserMessage.STATE_SIZE, "sizeof(struct vhost_vring_state)");
        field("vhost_vring_state.index", vhost_vring_state.index$offset(), vhost_vring_state.index$layout(),
                VhostUserMessage.STATE_INDEX_OFFSET, VhostUserMessage.U32);
        field("vhost_vring_state.num", vhost_vring_state.num$offset(), vhost_vring_state.num$layout(),
                VhostUserMessage.STATE_NUM_OFFSET, VhostUserMessage.U32);
    }

    /** VHOST_USER_SET_VRING_ADDR payload: the kernel's struct vhost_vring_addr. */
    @Test
    void vhostUserVringAddr() {
        assertEquals(vhost_vring_addr.sizeof(), VhostUserMessage.ADDR_SIZE, "sizeof(struct vhost_vring_addr)");
        field("vhost_vring_addr.index", vhost_vring_addr.index$offset(), vhost_vring_addr.index$layout(),
                VhostUserMessage.ADDR_INDEX_OFFSET, VhostUserMessage.U32);
        field("vhost_vring_addr.flags", vhost_vring_addr.flags$offset(), vhost_vring_addr.flags$layout(),
                VhostUserMessage.ADDR_FLAGS_OFFSET, VhostUserMessage.U32);
        field("vhost_vring_addr.desc_user_addr", vhost_vring_addr.desc_user_addr$offset(),
                vhost_vring_addr.desc_user_addr$layout(), VhostUserMessage.ADDR_DESC_OFFSET, VhostUserMessage.U64);
        field("vhost_vring_addr.used_user_addr", vhost_vring_addr.used_user_addr$offset(),
                vhost_vring_addr.used_user_addr$layout(), VhostUserMessage.ADDR_USED_OFFSET, VhostUserMessage.U64);
        field("vhost_vring_addr.avail_user_addr", vhost_vring_addr.avail_user_addr$offset(),
                vhost_vring_addr.avail_user_addr$layout(), VhostUserMessage.ADDR_AVAIL_OFFSET, VhostUserMessage.U64);
        field("vhost_vring_addr.log_guest_addr", vhost_vring_addr.log_guest_addr$offset(),
                vhost_vring_addr.log_guest_addr$layout(), VhostUserMessage.ADDR_LOG_OFFSET, VhostUserMessage.U64);
        // The kernel names the flag by its bit number, vhost-user's payload carries the mask.
        assertEquals(1 << Linux.VHOST_VRING_F_LOG(), VhostUserMessage.VRING_F_LOG, "1 << VHOST_VRING_F_LOG");
    }

    /**
     * VHOST_USER_SET_MEM_TABLE payload: the kernel's struct vhost_memory header and its
     * vhost_memory_region array; vhost-user carries the region's mmap offset where the kernel has
     * {@code flags_padding}. ADD/REM_MEM_REG carry one region after 8 bytes of padding.
     */
    @Test
    void vhostUserMemoryTable() {
        field("vhost_memory.nregions", vhost_memory.nregions$offset(), vhost_memory.nregions$layout(),
                VhostUserMessage.MEM_NREGIONS_OFFSET, VhostUserMessage.U32);
        field("vhost_memory.padding", vhost_memory.padding$offset(), vhost_memory.padding$layout(),
                VhostUserMessage.MEM_PADDING_OFFSET, VhostUserMessage.U32);
        assertEquals(vhost_memory.regions$offset(), VhostUserMessage.MEM_REGIONS_OFFSET, "offset of vhost_memory.regions");
        assertEquals(vhost_memory.sizeof(), VhostUserMessage.MEM_REGIONS_OFFSET, "sizeof(struct vhost_memory)");
        assertEquals(vhost_memory_region.sizeof(), VhostUserMessage.REGION_SIZE, "sizeof(struct vhost_memory_region)");
        assertEquals(vhost_memory_region.layout(), vhost_memory.regions$layout().elementLayout(),
                "vhost_memory.regions is an array of vhost_memory_region");
        field("vhost_memory_region.guest_phys_addr", vhost_memory_region.guest_phys_addr$offset(),
                vhost_memory_region.guest_phys_addr$layout(), VhostUserMessage.REGION_GPA_OFFSET, VhostUserMessage.U64);
        field("vhost_memory_region.memory_size", vhost_memory_region.memory_size$offset(),
                vhost_memory_region.memory_size$layout(), VhostUserMessage.REGION_SIZE_OFFSET, VhostUserMessage.U64);
        field("vhost_memory_region.userspace_addr", vhost_memory_region.userspace_addr$offset(),
                vhost_memory_region.userspace_addr$layout(), VhostUserMessage.REGION_UADDR_OFFSET, VhostUserMessage.U64);
        field("vhost_memory_region.flags_padding", vhost_memory_region.flags_padding$offset(),
                vhost_memory_region.flags_padding$layout(), VhostUserMessage.REGION_MMAP_OFFSET_OFFSET,
                VhostUserMessage.U64);
        assertEquals(vhost_memory_region.sizeof() + 8, VhostUserMessage.SINGLE_REGION_SIZE, "ADD/REM_MEM_REG payload");
        // One fd per region: the region limit and the fds one message may carry are the same 8.
        assertEquals(Linux.JVHOST_CMSG_MAX_FDS(), VhostUserMessage.MAX_FDS, "JVHOST_CMSG_MAX_FDS");
        assertEquals(Linux.JVHOST_CMSG_MAX_FDS(), VhostUserMessage.MEM_MAX_REGIONS, "JVHOST_CMSG_MAX_FDS");
    }

    /** The engines' iovec arrays (NativeMemory) as the kernel's readv/writev read them. */
    @Test
    void nativeMemoryIovec() {
        assertEquals(iovec.sizeof(), NativeMemory.IOVEC_SIZE, "sizeof(struct iovec)");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment iovs = iovec.allocateArray(3, a);
            NativeMemory.iovSet(iovs, 1, 0x1234_5678_9abcL, 1514);
            MemorySegment second = iovec.asSlice(iovs, 1);
            assertEquals(0x1234_5678_9abcL, iovec.iov_base(second).address(), "iov_base written by NativeMemory");
            assertEquals(1514, iovec.iov_len(second), "iov_len written by NativeMemory");
            iovec.iov_len(iovec.asSlice(iovs, 2), 60);
            assertEquals(60, NativeMemory.iovLen(iovs, 2), "iov_len read by NativeMemory");
        }
    }

    /** The Java driver's buffer layouts start with the same two header sizes. */
    @Test
    void driverNetBufferLayoutHeaders() {
        assertEquals(virtio_net_hdr_mrg_rxbuf.sizeof(), NetBufferLayout.HDR_LEN, "sizeof(struct virtio_net_hdr_mrg_rxbuf)");
        assertEquals(virtio_net_hdr.sizeof(), NetBufferLayout.HDR_LEN_LEGACY, "sizeof(struct virtio_net_hdr)");
    }

    /** Offset and access width of one member: the generated layout's against the hand-written class's. */
    private static void field(String member, long genOffset, MemoryLayout genLayout, long handOffset, MemoryLayout handAccess) {
        assertEquals(genOffset, handOffset, "offset of " + member);
        assertEquals(genLayout.byteSize(), handAccess.byteSize(), "width of " + member + " as the hand-written class accesses it");
    }
}
