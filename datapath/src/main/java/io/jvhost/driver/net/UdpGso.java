package io.jvhost.driver.net;

import io.jvhost.net.VirtioNetHdr;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * UDP segmentation offload on the guest side, as Linux's virtio_net driver does it: builds one
 * Ethernet/IPv4-or-IPv6/UDP super-frame holding many datagrams' payload with the virtio-net header
 * fields that make the device (and behind it the host kernel) cut it into {@code gsoSize}-byte
 * datagrams ({@code VIRTIO_NET_HDR_GSO_UDP_L4}, partial checksum), and takes a received frame
 * apart into its datagrams' payloads whether it arrived as one USO frame or already segmented.
 * Test, demo and bench code: allocates freely; stateless, thread-safe.
 */
public final class UdpGso {
    private UdpGso() {
    }

    public static final int ETHERTYPE_IPV6 = 0x86dd;
    public static final int IPV6_HLEN = 40;

    /**
     * A frame to send and the virtio-net header fields to send it with (the arguments of
     * {@link GuestNic#send(int, byte[], int, int, int, int, int, int, int, int, int)}).
     */
    public record Frame(byte[] frame, int flags, int gsoType, int hdrLen, int gsoSize, int csumStart, int csumOffset) {
        /** Sends it on queue pair {@code qp}; false when no TX buffer came free within {@code timeoutMs}. */
        public boolean sendOn(GuestNic nic, int qp, int timeoutMs) {
            return nic.send(qp, frame, 0, frame.length, flags, gsoType, hdrLen, gsoSize, csumStart, csumOffset, timeoutMs);
        }
    }

    /**
     * One UDP super-frame from {@code src:sport} to {@code dst:dport} (both IPv4 or both IPv6)
     * carrying {@code payload[off, off+len)}: the UDP length and the IP length cover the whole
     * payload, the UDP checksum field holds the folded pseudo-header sum over that length (what a
     * NEEDS_CSUM sender leaves: the segmenter adjusts it per datagram and completes it), and the
     * header asks for UDP_L4 segmentation into {@code gsoSize}-byte datagrams (the last one
     * shorter) — or, when the payload fits one datagram, for a plain partial checksum.
     */
    public static Frame build(byte[] srcMac, byte[] dstMac, InetAddress src, InetAddress dst, int sport, int dport,
                              byte[] payload, int off, int len, int gsoSize) {
        boolean v6 = src instanceof Inet6Address;
        if (v6 != (dst instanceof Inet6Address)) {
            throw new IllegalArgumentException("mixed address families: " + src + " → " + dst);
        }
        int ipLen = v6 ? IPV6_HLEN : Packets.IP_HLEN;
        int udpLen = Packets.UDP_HLEN + len;
        int l4 = Packets.ETH_HLEN + ipLen;
        ByteBuffer b = ByteBuffer.allocate(Math.max(60, l4 + udpLen));
        Packets.ethernet(b, dstMac, srcMac, v6 ? ETHERTYPE_IPV6 : Packets.ETHERTYPE_IPV4);
        if (v6) {
            b.putInt(6 << 28).putShort((short) udpLen).put((byte) Packets.PROTO_UDP).put((byte) 64)
                    .put(src.getAddress()).put(dst.getAddress());
        } else {
            Packets.ipv4(b, Packets.PROTO_UDP, Packets.u32(src.getAddress(), 0), Packets.u32(dst.getAddress(), 0),
                    udpLen, 0);
        }
        b.putShort((short) sport).putShort((short) dport).putShort((short) udpLen)
                .putShort((short) Packets.fold(pseudo(src, dst, udpLen))).put(payload, off, len);
        boolean gso = len > gsoSize;
        return new Frame(b.array(), VirtioNetHdr.FLAG_NEEDS_CSUM, gso ? VirtioNetHdr.GSO_UDP_L4 : VirtioNetHdr.GSO_NONE,
                l4 + Packets.UDP_HLEN, gso ? gsoSize : 0, l4, Packets.UDP_CSUM_OFFSET);
    }

    /** Unfolded UDP pseudo-header sum (IPv4: RFC 768; IPv6: RFC 8200 §8.1). */
    public static long pseudo(InetAddress src, InetAddress dst, int udpLen) {
        long s = Packets.PROTO_UDP + (long) udpLen;
        for (byte[] a : new byte[][]{src.getAddress(), dst.getAddress()}) {
            for (int i = 0; i < a.length; i += 2) {
                s += Packets.u16(a, i);
            }
        }
        return s;
    }

    /** A UDP datagram found in a received frame. */
    public record Datagram(InetAddress src, InetAddress dst, int sport, int dport, byte[] payload) {
    }

    /**
     * The datagrams a received Ethernet frame stands for: one, or for a {@code GSO_UDP_L4} frame
     * its payload cut into {@code gsoSize}-byte datagrams as the kernel would cut it. Null when
     * the frame is not IPv4/IPv6 UDP (without IPv6 extension headers).
     */
    public static List<Datagram> datagrams(byte[] f, int gsoType, int gsoSize) {
        int type = Packets.etherType(f);
        int l4;
        int ipPayloadEnd;
        InetAddress src;
        InetAddress dst;
        try {
            if (type == Packets.ETHERTYPE_IPV4 && Packets.ipProto(f) == Packets.PROTO_UDP) {
                l4 = Packets.l4(f);
                ipPayloadEnd = Packets.ETH_HLEN + Packets.ipTotalLen(f);
                src = InetAddress.getByAddress(Arrays.copyOfRange(f, Packets.ETH_HLEN + 12, Packets.ETH_HLEN + 16));
                dst = InetAddress.getByAddress(Arrays.copyOfRange(f, Packets.ETH_HLEN + 16, Packets.ETH_HLEN + 20));
            } else if (type == ETHERTYPE_IPV6 && f.length >= Packets.ETH_HLEN + IPV6_HLEN
                    && Packets.u8(f, Packets.ETH_HLEN + 6) == Packets.PROTO_UDP) {
                l4 = Packets.ETH_HLEN + IPV6_HLEN;
                ipPayloadEnd = l4 + Packets.u16(f, Packets.ETH_HLEN + 4);
                src = InetAddress.getByAddress(Arrays.copyOfRange(f, Packets.ETH_HLEN + 8, Packets.ETH_HLEN + 24));
                dst = InetAddress.getByAddress(Arrays.copyOfRange(f, Packets.ETH_HLEN + 24, Packets.ETH_HLEN + 40));
            } else {
                return null;
            }
        } catch (java.net.UnknownHostException e) {
            throw new IllegalStateException(e); // 4 or 16 bytes: cannot happen
        }
        int sport = Packets.u16(f, l4);
        int dport = Packets.u16(f, l4 + 2);
        int end = Math.min(f.length, Math.min(ipPayloadEnd, l4 + Packets.u16(f, l4 + 4)));
        int start = l4 + Packets.UDP_HLEN;
        List<Datagram> out = new ArrayList<>();
        int step = VirtioNetHdr.gsoProtocol(gsoType) == VirtioNetHdr.GSO_UDP_L4 && gsoSize > 0 ? gsoSize : Math.max(1, end - start);
        for (int p = start; p < end; p += step) {
            out.add(new Datagram(src, dst, sport, dport, Arrays.copyOfRange(f, p, Math.min(end, p + step))));
        }
        if (out.isEmpty()) {
            out.add(new Datagram(src, dst, sport, dport, new byte[0]));
        }
        return out;
    }

    /** Parses a literal IP address (no name lookup). */
    public static InetAddress address(String literal) {
        if (!literal.contains(":") && !literal.matches("[0-9.]+")) {
            throw new IllegalArgumentException("not an IP literal: " + literal);
        }
        try {
            return InetAddress.getByName(literal);
        } catch (java.net.UnknownHostException e) {
            throw new IllegalArgumentException(literal, e);
        }
    }

    /** True for IPv4 addresses. */
    public static boolean isV4(InetAddress a) {
        return a instanceof Inet4Address;
    }
}
