package io.jvhost.bench.e2e;

/**
 * The end-to-end scenarios. "TX" is guest to host: front-end transmits, the back-end writes the
 * tap, frames are counted where the kernel receives them (the tap's rx counters). "RX" is host to
 * guest: a generator in the bench namespace sends out of the tap, the back-end reads it, frames are
 * counted where the back-end takes them (the tap's tx counters). "RR" is a round trip: a requester
 * in the namespace pings the "guest" behind the back-end, one request outstanding at a time.
 */
public enum Scenario {
    TX_64("tx64", Kind.TX, 64, "TX 64 B"),
    TX_1514("tx1514", Kind.TX, 1514, "TX 1514 B"),
    TX_64K_GSO("tx64k", Kind.TX_GSO, 65549, "TX 64 KiB TSO (GSO TCPv4)"),
    TX_64K_USO("tx64k-uso", Kind.TX_USO, 65549, "TX 64 KiB USO (GSO UDP_L4, IPv4, gso_size 1472)"),
    TX_1472_UDP("tx1472-udp", Kind.TX_DGRAM, 1514, "TX 1472-byte UDP datagrams (the USO scenario's data, unsegmented)"),
    RX_64("rx64", Kind.RX, 64, "RX 64 B"),
    RX_1514("rx1514", Kind.RX, 1514, "RX 1514 B"),
    RR_64("rr64", Kind.RR, 64, "Round trip 64 B (ICMP echo)");

    /**
     * What a scenario measures and where frames are counted. TX_USO: one UDP super-frame to the
     * host's address, segmented by the kernel; TX_DGRAM: the same payload as 1472-byte datagrams to
     * the same address, from the same front-end (the comparison USO is about).
     */
    public enum Kind { TX, TX_GSO, TX_USO, TX_DGRAM, RX, RR }

    public final String id;
    public final Kind kind;
    /** UDP payload bytes per frame of a UDP scenario (Ethernet + IPv4 + UDP headers: 42 bytes). */
    public int udpPayload() {
        return frameSize - 42;
    }

    /** Ethernet frame size without FCS (for GSO: the whole super-frame). */
    public final int frameSize;
    public final String title;

    Scenario(String id, Kind kind, int frameSize, String title) {
        this.id = id;
        this.kind = kind;
        this.frameSize = frameSize;
        this.title = title;
    }

    public boolean isTx() {
        return kind == Kind.TX || kind == Kind.TX_GSO || kind == Kind.TX_USO || kind == Kind.TX_DGRAM;
    }

    public static Scenario byId(String id) {
        for (Scenario s : values()) {
            if (s.id.equals(id)) {
                return s;
            }
        }
        throw new IllegalArgumentException("unknown scenario " + id + " (known: tx64 tx1514 tx64k tx64k-uso tx1472-udp rx64 rx1514 rr64)");
    }
}
