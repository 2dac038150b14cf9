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
