package io.jvhost.net;

/** Frames the device itself originates (control path only; allocates). */
public final class Frames {
    private Frames() {
    }

    public static final int ETHERTYPE_RARP = 0x8035;
    public static final int ETHERTYPE_IPV4 = 0x0800;
    /** Shortest Ethernet frame without FCS. */
    public static final int MIN_FRAME = 60;
    private static final int ARP_HTYPE_ETHERNET = 1;
    private static final int RARP_OP_REQUEST_REVERSE = 3;

    /**
     * Gratuitous RARP announcing {@code mac} after migration (what QEMU's {@code qemu_announce_self}
     * sends): broadcast, RARP "request reverse", sender = target = {@code mac}, addresses zero.
     */
    public static byte[] rarp(byte[] mac) {
        byte[] f = new byte[MIN_FRAME];
        for (int i = 0; i < 6; i++) {
            f[i] = (byte) 0xff;
        }
        System.arraycopy(mac, 0, f, 6, 6);
        put16(f, 12, ETHERTYPE_RARP);
        put16(f, 14, ARP_HTYPE_ETHERNET);
        put16(f, 16, ETHERTYPE_IPV4);
        f[18] = 6;
        f[19] = 4;
        put16(f, 20, RARP_OP_REQUEST_REVERSE);
        System.arraycopy(mac, 0, f, 22, 6);
        System.arraycopy(mac, 0, f, 32, 6);
        return f;
    }

    private static void put16(byte[] b, int off, int v) {
        b[off] = (byte) (v >>> 8);
        b[off + 1] = (byte) v;
    }
}
