package io.jvhost.driver.net;

import java.nio.ByteBuffer;

/**
 * Builds and parses the few frame types the Java guest speaks: Ethernet II, ARP, IPv4, ICMP echo,
 * UDP and TCP (no options beyond what is written here). Network byte order. Control/test code:
 * allocates freely.
 */
public final class Packets {
    private Packets() {
    }

    public static final int ETH_HLEN = 14;
    public static final int IP_HLEN = 20;
    public static final int UDP_HLEN = 8;
    public static final int TCP_HLEN = 20;
    public static final int ICMP_HLEN = 8;
    public static final int ETHERTYPE_IPV4 = 0x0800;
    public static final int ETHERTYPE_ARP = 0x0806;
    public static final int PROTO_ICMP = 1;
    public static final int PROTO_TCP = 6;
    public static final int PROTO_UDP = 17;
    public static final int ICMP_ECHO_REPLY = 0;
    public static final int ICMP_ECHO_REQUEST = 8;
    public static final int ARP_REQUEST = 1;
    public static final int ARP_REPLY = 2;
    public static final byte[] BROADCAST = {-1, -1, -1, -1, -1, -1};
    /** Offset of the UDP checksum in the UDP header. */
    public static final int UDP_CSUM_OFFSET = 6;
    /** Offset of the TCP checksum in the TCP header. */
    public static final int TCP_CSUM_OFFSET = 16;

    public static final int TCP_FIN = 0x01;
    public static final int TCP_SYN = 0x02;
    public static final int TCP_RST = 0x04;
    public static final int TCP_PSH = 0x08;
    public static final int TCP_ACK = 0x10;

    public static int ip(int a, int b, int c, int d) {
        return (a << 24) | (b << 16) | (c << 8) | d;
    }

    public static String ipString(int ip) {
        return (ip >>> 24) + "." + ((ip >>> 16) & 0xff) + "." + ((ip >>> 8) & 0xff) + "." + (ip & 0xff);
    }

    public static void ethernet(ByteBuffer b, byte[] dst, byte[] src, int type) {
        b.put(dst).put(src).putShort((short) type);
    }

    public static byte[] arp(int op, byte[] srcMac, int srcIp, byte[] dstMac, int dstIp) {
        ByteBuffer b = ByteBuffer.allocate(60);
        ethernet(b, op == ARP_REQUEST ? BROADCAST : dstMac, srcMac, ETHERTYPE_ARP);
        b.putShort((short) 1).putShort((short) ETHERTYPE_IPV4).put((byte) 6).put((byte) 4).putShort((short) op);
        b.put(srcMac).putInt(srcIp).put(op == ARP_REQUEST ? new byte[6] : dstMac).putInt(dstIp);
        return b.array();
    }

    /** Writes an IPv4 header (no options, DF set) with a correct header checksum at the buffer position. */
    public static void ipv4(ByteBuffer b, int proto, int src, int dst, int payloadLen, int id) {
        int start = b.position();
        b.put((byte) 0x45).put((byte) 0).putShort((short) (IP_HLEN + payloadLen)).putShort((short) id)
                .putShort((short) 0x4000).put((byte) 64).put((byte) proto).putShort((short) 0).putInt(src).putInt(dst);
        b.putShort(start + 10, (short) checksum(b.array(), start, IP_HLEN, 0));
    }

    public static byte[] udp(byte[] srcMac, byte[] dstMac, int srcIp, int dstIp, int srcPort, int dstPort, byte[] payload,
                             int id) {
        ByteBuffer b = ByteBuffer.allocate(Math.max(60, ETH_HLEN + IP_HLEN + UDP_HLEN + payload.length));
        ethernet(b, dstMac, srcMac, ETHERTYPE_IPV4);
        ipv4(b, PROTO_UDP, srcIp, dstIp, UDP_HLEN + payload.length, id);
        int u = b.position();
        b.putShort((short) srcPort).putShort((short) dstPort).putShort((short) (UDP_HLEN + payload.length))
                .putShort((short) 0).put(payload);
        int sum = checksum(b.array(), u, UDP_HLEN + payload.length, pseudo(srcIp, dstIp, PROTO_UDP, UDP_HLEN + payload.length));
        b.putShort(u + UDP_CSUM_OFFSET, (short) (sum == 0 ? 0xffff : sum));
        return b.array();
    }

    public static byte[] icmpEcho(byte[] srcMac, byte[] dstMac, int srcIp, int dstIp, int type, int ident, int seq,
                                  byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(Math.max(60, ETH_HLEN + IP_HLEN + ICMP_HLEN + payload.length));
        ethernet(b, dstMac, srcMac, ETHERTYPE_IPV4);
        ipv4(b, PROTO_ICMP, srcIp, dstIp, ICMP_HLEN + payload.length, seq);
        int i = b.position();
        b.put((byte) type).put((byte) 0).putShort((short) 0).putShort((short) ident).putShort((short) seq).put(payload);
        b.putShort(i + 2, (short) checksum(b.array(), i, ICMP_HLEN + payload.length, 0));
        return b.array();
    }

    /**
     * A TCP segment. With {@code partialCsum} the checksum field holds only the folded pseudo-header
     * sum (what a NEEDS_CSUM sender writes: the device/kernel completes it), else the full checksum.
     */
    public static byte[] tcp(byte[] srcMac, byte[] dstMac, int srcIp, int dstIp, int srcPort, int dstPort, long seq,
                             long ack, int flags, int window, byte[] data, int dataOff, int dataLen, boolean partialCsum,
                             byte[] options) {
        int optLen = options == null ? 0 : options.length;
        int tcpLen = TCP_HLEN + optLen + dataLen;
        ByteBuffer b = ByteBuffer.allocate(Math.max(60, ETH_HLEN + IP_HLEN + tcpLen));
        ethernet(b, dstMac, srcMac, ETHERTYPE_IPV4);
        ipv4(b, PROTO_TCP, srcIp, dstIp, tcpLen, 0);
        int t = b.position();
        b.putShort((short) srcPort).putShort((short) dstPort).putInt((int) seq).putInt((int) ack)
                .put((byte) (((TCP_HLEN + optLen) / 4) << 4)).put((byte) flags).putShort((short) window)
                .putShort((short) 0).putShort((short) 0);
        if (optLen > 0) {
            b.put(options);
        }
        if (dataLen > 0) {
            b.put(data, dataOff, dataLen);
        }
        int pseudo = pseudo(srcIp, dstIp, PROTO_TCP, tcpLen);
        if (partialCsum) {
            // fold, not complement: the completer adds the TCP bytes and complements
            b.putShort(t + TCP_CSUM_OFFSET, (short) fold(pseudo));
        } else {
            b.putShort(t + TCP_CSUM_OFFSET, (short) checksum(b.array(), t, tcpLen, pseudo));
        }
        return b.array();
    }

    /** Unfolded pseudo-header sum. */
    public static int pseudo(int src, int dst, int proto, int len) {
        return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
    }

    public static int fold(long sum) {
        while ((sum >>> 16) != 0) {
            sum = (sum & 0xffff) + (sum >>> 16);
        }
        return (int) sum;
    }

    /** Internet checksum of {@code len} bytes plus an initial sum, complemented. */
    public static int checksum(byte[] a, int off, int len, long initial) {
        long sum = initial;
        int i = 0;
        for (; i + 1 < len; i += 2) {
            sum += ((a[off + i] & 0xff) << 8) | (a[off + i + 1] & 0xff);
        }
        if (i < len) {
            sum += (a[off + i] & 0xff) << 8;
        }
        return ~fold(sum) & 0xffff;
    }

    // ---- parsing (offsets into an Ethernet frame) ----

    public static int u8(byte[] f, int off) {
        return f[off] & 0xff;
    }

    public static int u16(byte[] f, int off) {
        return ((f[off] & 0xff) << 8) | (f[off + 1] & 0xff);
    }

    public static int u32(byte[] f, int off) {
        return (u16(f, off) << 16) | u16(f, off + 2);
    }

    public static int etherType(byte[] f) {
        return f.length >= ETH_HLEN ? u16(f, 12) : -1;
    }

    public static byte[] srcMac(byte[] f) {
        return java.util.Arrays.copyOfRange(f, 6, 12);
    }

    public static int ipProto(byte[] f) {
        return u8(f, ETH_HLEN + 9);
    }

    public static int ipSrc(byte[] f) {
        return u32(f, ETH_HLEN + 12);
    }

    public static int ipDst(byte[] f) {
        return u32(f, ETH_HLEN + 16);
    }

    public static int ipTotalLen(byte[] f) {
        return u16(f, ETH_HLEN + 2);
    }

    /** Offset of the L4 header. */
    public static int l4(byte[] f) {
        return ETH_HLEN + (u8(f, ETH_HLEN) & 0xf) * 4;
    }
}
