package io.jvhost.driver.net;

import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * A tiny IPv4 host on top of {@link GuestNic}: answers ARP requests for its address and ICMP echo
 * requests, echoes UDP datagrams sent to {@link #UDP_ECHO_PORT}, resolves a peer's MAC with ARP,
 * and hands every other frame to a listener. Test and demo code; allocates.
 *
 * <p>Threading: {@link #pump} for a queue pair runs on one thread at a time.
 */
public final class GuestStack {
    /** UDP datagrams to this port are sent back to their source, unchanged. */
    public static final int UDP_ECHO_PORT = 7;

    private final GuestNic nic;
    private final byte[] mac;
    private final int ip;
    private final ConcurrentHashMap<Integer, byte[]> arpCache = new ConcurrentHashMap<>();
    private volatile Consumer<GuestNic.Received> listener = r -> { };
    private volatile long arpReplies;
    private volatile long echoReplies;
    private volatile long udpEchoes;

    public GuestStack(GuestNic nic, byte[] mac, int ip) {
        this.nic = nic;
        this.mac = mac.clone();
        this.ip = ip;
    }

    public byte[] mac() {
        return mac.clone();
    }

    public int ip() {
        return ip;
    }

    public GuestNic nic() {
        return nic;
    }

    /** Frames not consumed by the stack itself (replies to our requests, other traffic). */
    public void setListener(Consumer<GuestNic.Received> l) {
        this.listener = l;
    }

    public long arpReplies() {
        return arpReplies;
    }

    public long echoReplies() {
        return echoReplies;
    }

    public long udpEchoes() {
        return udpEchoes;
    }

    /**
     * Receives and handles frames on {@code qp} for up to {@code timeoutMs} or until one frame was
     * handed to the listener.
     *
     * @return the frame given to the listener, or null
     */
    public GuestNic.Received pump(int qp, int timeoutMs) {
        long end = System.nanoTime() + timeoutMs * 1_000_000L;
        while (true) {
            long left = Math.max(0, (end - System.nanoTime()) / 1_000_000L);
            GuestNic.Received r = nic.receive(qp, (int) Math.max(1, left));
            if (r == null) {
                return null;
            }
            if (!handle(qp, r)) {
                listener.accept(r);
                return r;
            }
            if (System.nanoTime() > end) {
                return null;
            }
        }
    }

    /** Handles ARP / ICMP echo / UDP echo; false when the frame is for someone else. */
    public boolean handle(int qp, GuestNic.Received r) {
        byte[] f = r.frame();
        int type = Packets.etherType(f);
        if (type == Packets.ETHERTYPE_ARP && f.length >= 42) {
            int op = Packets.u16(f, 20);
            int spa = Packets.u32(f, 28);
            int tpa = Packets.u32(f, 38);
            byte[] sha = Arrays.copyOfRange(f, 22, 28);
            arpCache.put(spa, sha);
            if (op == Packets.ARP_REQUEST && tpa == ip) {
                nic.send(qp, Packets.arp(Packets.ARP_REPLY, mac, ip, sha, spa), 1000);
                arpReplies++;
                return true;
            }
            return op == Packets.ARP_REPLY;
        }
        if (type != Packets.ETHERTYPE_IPV4 || Packets.ipDst(f) != ip) {
            return false;
        }
        int l4 = Packets.l4(f);
        int proto = Packets.ipProto(f);
        if (proto == Packets.PROTO_ICMP && Packets.u8(f, l4) == Packets.ICMP_ECHO_REQUEST) {
            int len = Packets.ipTotalLen(f) - (l4 - Packets.ETH_HLEN) - Packets.ICMP_HLEN;
            byte[] payload = Arrays.copyOfRange(f, l4 + Packets.ICMP_HLEN, l4 + Packets.ICMP_HLEN + len);
            nic.send(qp, Packets.icmpEcho(mac, Packets.srcMac(f), ip, Packets.ipSrc(f), Packets.ICMP_ECHO_REPLY,
                    Packets.u16(f, l4 + 4), Packets.u16(f, l4 + 6), payload), 1000);
            echoReplies++;
            return true;
        }
        if (proto == Packets.PROTO_UDP && Packets.u16(f, l4 + 2) == UDP_ECHO_PORT) {
            int len = Packets.u16(f, l4 + 4) - Packets.UDP_HLEN;
            byte[] payload = Arrays.copyOfRange(f, l4 + Packets.UDP_HLEN, l4 + Packets.UDP_HLEN + len);
            nic.send(qp, Packets.udp(mac, Packets.srcMac(f), ip, Packets.ipSrc(f), UDP_ECHO_PORT, Packets.u16(f, l4),
                    payload, 0), 1000);
            udpEchoes++;
            return true;
        }
        return false;
    }

    /** Resolves {@code peer}'s MAC with ARP (cached), pumping {@code qp} meanwhile. */
    public byte[] resolve(int qp, int peer, int timeoutMs) {
        byte[] m = arpCache.get(peer);
        long end = System.nanoTime() + timeoutMs * 1_000_000L;
        while (m == null && System.nanoTime() < end) {
            nic.send(qp, Packets.arp(Packets.ARP_REQUEST, mac, ip, null, peer), 1000);
            pump(qp, 200);
            m = arpCache.get(peer);
        }
        if (m == null) {
            throw new IllegalStateException("no ARP reply from " + Packets.ipString(peer));
        }
        return m;
    }
}
