package io.jvhost.it;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;

/**
 * A sustained UDP load for RX tests, run in its own JVM inside a netns
 * ({@code ip netns exec NS java -cp ... io.jvhost.it.UdpFlood DST PORT SECONDS}): sends 18-byte
 * datagrams (64-byte frames) to DST as fast as it can for SECONDS. With a static neighbour entry for
 * DST the kernel hands each one straight to the tap, which drops what its reader does not take.
 */
public final class UdpFlood {
    private UdpFlood() {
    }

    public static void main(String[] args) throws Exception {
        InetSocketAddress dst = new InetSocketAddress(args[0], Integer.parseInt(args[1]));
        long end = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
        ByteBuffer payload = ByteBuffer.allocateDirect(18);
        long sent = 0;
        try (DatagramChannel ch = DatagramChannel.open()) {
            ch.connect(dst);
            while (System.nanoTime() < end) {
                for (int i = 0; i < 256; i++) {
                    payload.clear();
                    try {
                        ch.write(payload);
                        sent++;
                    } catch (java.io.IOException e) {
                        // ENOBUFS from a full tap queue: keep offering
                    }
                }
            }
        }
        System.out.println("UDPFLOOD sent=" + sent);
    }
}
