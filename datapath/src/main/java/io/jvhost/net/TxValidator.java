package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.virtio.VirtioFeatures;
import java.lang.foreign.MemorySegment;

/**
 * Checks a guest's TX frame (its virtio-net header and length) before the frame reaches the tap.
 * The tap would reject most of these itself with EINVAL, but checking first lets the drop be counted
 * under a precise reason and keeps a misbehaving guest from costing us a syscall per bad frame.
 *
 * <p>Immutable after construction (rebuilt when features change); {@link #check} allocates nothing
 * and is called only from the queue-pair worker.
 */
public final class TxValidator {
    /**
     * Most segments the kernel makes of one UDP GSO frame ({@code UDP_MAX_SEGMENTS}: 128 on 6.18, checked by
     * writing frames to a tap; older kernels allow 64, and refuse more with EINVAL, counted as TX_TAP_ERROR).
     */
    public static final int UDP_MAX_SEGMENTS = 128;

    private final long features;
    private final int maxPlainFrame;
    private final boolean csum;
    private final boolean ecn;

    /**
     * @param features negotiated virtio features
     * @param mtu      device MTU (the largest non-GSO frame is MTU + Ethernet header + one VLAN tag)
     */
    public TxValidator(long features, int mtu) {
        this.features = features;
        this.maxPlainFrame = mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN;
        this.csum = VirtioFeatures.has(features, VirtioFeatures.NET_F_CSUM);
        this.ecn = VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_ECN);
    }

    public int maxPlainFrame() {
        return maxPlainFrame;
    }

    /**
     * @param hdr      segment holding a copy of the header (at least 10 bytes from {@code base})
     * @param base     offset of the header in {@code hdr}
     * @param frameLen frame bytes after the header
     * @return null when the frame may be written, else the drop reason
     */
    public DropReason check(MemorySegment hdr, long base, long frameLen) {
        if (frameLen < VirtioNetHdr.ETH_HLEN) {
            return DropReason.TX_TOO_SHORT;
        }
        int flags = VirtioNetHdr.flags(hdr, base);
        int gsoType = VirtioNetHdr.gsoType(hdr, base);
        int proto = VirtioNetHdr.gsoProtocol(gsoType);
        if ((flags & VirtioNetHdr.FLAG_RSC_INFO) != 0) {
            return DropReason.TX_BAD_GSO;
        }
        if (proto == VirtioNetHdr.GSO_NONE) {
            if (gsoType != VirtioNetHdr.GSO_NONE) {
                return DropReason.TX_BAD_GSO; // ECN bit on a non-GSO frame
            }
            if (frameLen > maxPlainFrame) {
                return DropReason.TX_TOO_LONG;
            }
        } else {
            if (!gsoNegotiated(proto)) {
                return DropReason.TX_BAD_GSO;
            }
            if ((gsoType & VirtioNetHdr.GSO_ECN) != 0 && !ecn) {
                return DropReason.TX_BAD_GSO;
            }
            if (VirtioNetHdr.gsoSize(hdr, base) == 0) {
                return DropReason.TX_BAD_GSO;
            }
            if (frameLen > VirtioNetHdr.MAX_GSO_FRAME) {
                return DropReason.TX_TOO_LONG;
            }
        }
        if (VirtioNetHdr.hdrLen(hdr, base) > frameLen) {
            return DropReason.TX_BAD_GSO; // the tap refuses hdr_len beyond the data (EINVAL)
        }
        if ((flags & VirtioNetHdr.FLAG_NEEDS_CSUM) != 0) {
            if (!csum) {
                return DropReason.TX_BAD_CSUM;
            }
            long end = (long) VirtioNetHdr.csumStart(hdr, base) + VirtioNetHdr.csumOffset(hdr, base) + Short.BYTES;
            if (end > frameLen) {
                return DropReason.TX_BAD_CSUM;
            }
        }
        return proto == VirtioNetHdr.GSO_UDP_L4 ? checkUdpL4(hdr, base, frameLen, flags, gsoType) : null;
    }

    /**
     * What the kernel's {@code virtio_net_hdr_to_skb} demands of a UDP_L4 header (it refuses the
     * frame with EINVAL otherwise; checked here so that the drop is counted under its reason): a
     * partial checksum (each segment's checksum is completed from it) stored in the UDP header's
     * check field after at least an IPv4 header, no ECN bit, at most {@link #UDP_MAX_SEGMENTS}
     * segments. In addition each segment must fit the MTU as a plain frame must: Linux's own
     * UDP_SEGMENT refuses a gso_size beyond it, and without the check a guest could push datagrams
     * larger than its MTU through a device that drops such plain frames.
     */
    private DropReason checkUdpL4(MemorySegment hdr, long base, long frameLen, int flags, int gsoType) {
        if ((gsoType & VirtioNetHdr.GSO_ECN) != 0) {
            return DropReason.TX_BAD_GSO;
        }
        if ((flags & VirtioNetHdr.FLAG_NEEDS_CSUM) == 0
                || VirtioNetHdr.csumOffset(hdr, base) != VirtioNetHdr.UDP_CSUM_OFFSET) {
            return DropReason.TX_BAD_CSUM;
        }
        int l4 = VirtioNetHdr.csumStart(hdr, base);
        long payloadStart = (long) l4 + VirtioNetHdr.UDP_HLEN;
        if (l4 < VirtioNetHdr.ETH_HLEN + VirtioNetHdr.IPV4_MIN_HLEN || payloadStart > frameLen) {
            return DropReason.TX_BAD_CSUM;
        }
        int gsoSize = VirtioNetHdr.gsoSize(hdr, base);
        if (payloadStart + gsoSize > maxPlainFrame) {
            return DropReason.TX_BAD_GSO;
        }
        if (frameLen - payloadStart > (long) gsoSize * UDP_MAX_SEGMENTS) {
            return DropReason.TX_BAD_GSO;
        }
        return null;
    }

    private boolean gsoNegotiated(int proto) {
        return switch (proto) {
            case VirtioNetHdr.GSO_TCPV4 -> VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_TSO4);
            case VirtioNetHdr.GSO_TCPV6 -> VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_TSO6);
            case VirtioNetHdr.GSO_UDP -> VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_UFO);
            case VirtioNetHdr.GSO_UDP_L4 -> VirtioFeatures.has(features, VirtioFeatures.NET_F_HOST_USO);
            default -> false;
        };
    }
}
