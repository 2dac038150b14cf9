package io.jvhost.bench.e2e;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.RingOptions;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.Packets;
import io.jvhost.driver.net.UdpGso;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.vhostuser.VhostUserMessage;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CountDownLatch;

/**
 * The Java driver (io.jvhost.driver) as a bench front-end process, for any vhost-user back-end:
 * <pre>DriverFront --socket-path=SOCK --mode=tx|rx|echo [--size=N] [--gso|--uso|--to-host] [--ring=1024]
 *             [--rings=split|packed|split-inorder|packed-inorder] [--tx-window=N] [--count-file=PATH] [--queues=N]</pre>
 * --rings: the virtqueue format and ordering (default split); when the back-end does not offer
 * them the front-end says so and exits with status 3, it does not fall back.
 * tx: sends the frame testpmd txonly sends (UDP 198.18.0.1 → 198.18.0.2 to 02:00:00:00:00:00),
 * or with --gso one TCPv4 super-frame of --size bytes to the tap's address with GSO_TCPV4 /
 * NEEDS_CSUM (HOST_TSO4 and CSUM negotiated), or with --uso one UDP super-frame of --size bytes
 * (IPv4, 10.99.0.2:40000 → the tap's 10.99.0.1:9) with GSO_UDP_L4, gso_size 1472, NEEDS_CSUM
 * (HOST_USO and CSUM negotiated), or with --to-host a plain UDP datagram frame of --size bytes on
 * that same path (full checksum: what the USO frame's data is as 1472-byte datagrams at --size
 * 1514), as fast as TX buffers come back; the frame is written
 * into every TX buffer once ({@link GuestNic#prefillTx}) and each send posts a buffer with only its
 * header written ({@link GuestNic#sendPrefilled}), so the front-end copies nothing per frame;
 * --tx-window caps the frames in flight (default: the ring).
 * rx: counts received frames ({@link GuestNic#drainRx}: no copy, buffers re-posted in batches),
 * sleeping on the call eventfd when the ring is empty (the blocking guest the issue asks for on two
 * cores); with --count-file the count so far is kept in that file
 * (one native-order long, updated after every frame) for the harness to sample. echo: answers ICMP echo requests. Runs until SIGTERM and
 * prints {@code RESULT frames=..}. --queues=N (tx and rx): N queue pairs (MQ negotiated), each driven by
 * a thread of its own the same way; the count file then holds queue pair 0's count. Otherwise
 * single-threaded (the main thread drives the NIC).
 */
public final class DriverFront {
    private DriverFront() {
    }

    private static volatile boolean stop;

    public static void main(String[] args) throws Exception {
        String socket = null;
        String mode = "tx";
        int size = 64;
        boolean gso = false;
        boolean uso = false;
        boolean toHost = false;
        int ring = 1024;
        String countFile = null;
        int txWindow = Integer.MAX_VALUE;
        int queues = 1;
        RingOptions rings = RingOptions.SPLIT;
        for (String a : args) {
            if (a.startsWith("--socket-path=")) {
                socket = a.substring(14);
            } else if (a.startsWith("--mode=")) {
                mode = a.substring(7);
            } else if (a.startsWith("--size=")) {
                size = Integer.parseInt(a.substring(7));
            } else if (a.equals("--gso")) {
                gso = true;
            } else if (a.equals("--uso")) {
                uso = true;
            } else if (a.equals("--to-host")) {
                toHost = true;
            } else if (a.startsWith("--ring=")) {
                ring = Integer.parseInt(a.substring(7));
            } else if (a.startsWith("--rings=")) {
                rings = RingOptions.parse(a.substring(8));
            } else if (a.startsWith("--tx-window=")) {
                txWindow = Integer.parseInt(a.substring(12));
            } else if (a.startsWith("--queues=")) {
                queues = Integer.parseInt(a.substring(9));
            } else if (a.startsWith("--count-file=")) {
                countFile = a.substring(13);
            } else {
                throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        if (socket == null) {
            throw new IllegalArgumentException("--socket-path= is required");
        }
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
                | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);
        if (gso) {
            features |= VirtioFeatures.bit(VirtioFeatures.NET_F_CSUM) | VirtioFeatures.bit(VirtioFeatures.NET_F_HOST_TSO4);
        }
        if (uso) {
            features |= VirtioFeatures.bit(VirtioFeatures.NET_F_CSUM) | VirtioFeatures.bit(VirtioFeatures.NET_F_HOST_USO);
        }
        if (queues > 1) {
            features |= VirtioFeatures.bit(VirtioFeatures.NET_F_MQ);
        }
        features = rings.applyTo(features);
        int maxTx = Math.max(size, 1514);
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop = true;
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "driver-front-stop"));
        long frames = 0;
        long t0 = System.nanoTime();
        java.util.concurrent.atomic.AtomicLong others = new java.util.concurrent.atomic.AtomicLong();
        java.util.List<Thread> extra = new java.util.ArrayList<>();
        try (DriverMemory mem = DriverMemory.memfd("bench-guest", GuestNic.ramNeeded(queues, ring, maxTx, features),
                DriverMemory.DEFAULT_GPA_BASE);
             GuestNic nic = new GuestNic(mem, queues, features, ring, maxTx);
             VhostUserClient client = VhostUserClient.connect(socket)) {
            long ta = System.nanoTime();
            try {
                nic.attachVhostUser(client, VhostUserMessage.PROTOCOL_SUPPORTED);
            } catch (IllegalStateException e) {
                System.out.println("driver front-end: cannot attach with " + rings + " rings: " + e.getMessage());
                System.out.flush();
                Runtime.getRuntime().halt(3);
            }
            System.out.printf("driver front-end: attached, %s rings, mode %s (JVM start to attached %d ms, handshake %d ms)%n",
                    rings, mode, java.lang.management.ManagementFactory.getRuntimeMXBean().getUptime(),
                    (System.nanoTime() - ta) / 1_000_000);
            String modeQ = mode;
            for (int q = 1; q < queues && (mode.equals("tx") || mode.equals("rx")); q++) {
                int qp = q;
                boolean gsoQ = gso;
                int sizeQ = size;
                extra.add(Thread.ofPlatform().name("driver-front-q" + q).start(() -> {
                    long n = modeQ.equals("tx") ? txLoop(nic, qp, sizeQ, gsoQ) : rxLoop(nic, qp);
                    others.addAndGet(n);
                }));
            }
            switch (mode) {
                case "tx" -> {
                    UdpGso.Frame u = uso || toHost ? udpToHost(size, uso) : null;
                    byte[] f = u != null ? u.frame() : gso ? tcpGso(size) : udp(size);
                    int flags = u != null ? u.flags() : gso ? VirtioNetHdr.FLAG_NEEDS_CSUM : 0;
                    int type = u != null ? u.gsoType() : gso ? VirtioNetHdr.GSO_TCPV4 : VirtioNetHdr.GSO_NONE;
                    // Every TX buffer holds the frame once; each send writes only the virtio-net header
                    // (zero-copy, as a guest transmitting skbs in place), so the back-end, not a 64 KiB
                    // memcpy per frame in this front-end, sets the pace.
                    nic.prefillTx(0, f, 0, f.length);
                    int hdrLenField = u != null ? u.hdrLen() : gso ? 54 : 0;
                    int gsoSize = u != null ? u.gsoSize() : gso ? 1448 : 0;
                    int csumStart = u != null ? u.csumStart() : gso ? 34 : 0;
                    int csumOffset = u != null ? u.csumOffset() : gso ? 16 : 0;
                    while (!stop) {
                        // Window full: wait until half of it is back (one call per half window,
                        // as a TSQ-limited guest refills after a batch of TX completions).
                        if (txWindow < ring && nic.txInFlight(0) >= txWindow
                                && !nic.awaitTxInFlightAtMost(0, txWindow / 2, 100)) {
                            continue;
                        }
                        if (nic.sendPrefilled(0, f.length, flags, type, hdrLenField, gsoSize, csumStart, csumOffset, 100)) {
                            frames++;
                        }
                    }
                }
                case "rx" -> {
                    try (Arena arena = Arena.ofConfined()) {
                        MemorySegment count = countFile == null ? null : countSegment(countFile, arena);
                        while (!stop) {
                            // Takes every returned frame without copying it out, re-posts the buffers
                            // in one batch, and sleeps on the call eventfd when the ring is empty.
                            int n = nic.drainRx(0, 100);
                            if (n > 0) {
                                frames += n;
                                if (count != null) {
                                    // A plain aligned 8-byte store: the harness reads the file now and
                                    // then and needs no ordering with anything else.
                                    count.set(ValueLayout.JAVA_LONG, 0, frames);
                                }
                            }
                        }
                    }
                }
                case "echo" -> {
                    while (!stop) {
                        GuestNic.Received r = nic.receive(0, 100);
                        if (r != null && echoReply(r.frame())) {
                            nic.send(0, r.frame(), 100);
                            frames++;
                        }
                    }
                }
                default -> throw new IllegalArgumentException("--mode: tx, rx or echo");
            }
        } finally {
            stop = true;
            for (Thread t : extra) {
                t.join();
            }
            frames += others.get();
            double dt = (System.nanoTime() - t0) / 1e9;
            System.out.printf("RESULT frames=%d seconds=%.3f pps=%.0f%n", frames, dt, frames / dt);
            done.countDown();
        }
    }

    /** One more queue pair's TX (--queues): the frame prefilled, only headers written per send. */
    private static long txLoop(GuestNic nic, int qp, int size, boolean gso) {
        byte[] f = gso ? tcpGso(size) : udp(size);
        nic.prefillTx(qp, f, 0, f.length);
        long n = 0;
        while (!stop) {
            if (nic.sendPrefilled(qp, f.length, gso ? VirtioNetHdr.FLAG_NEEDS_CSUM : 0,
                    gso ? VirtioNetHdr.GSO_TCPV4 : VirtioNetHdr.GSO_NONE, gso ? 54 : 0, gso ? 1448 : 0, gso ? 34 : 0,
                    gso ? 16 : 0, 100)) {
                n++;
            }
        }
        return n;
    }

    /** One more queue pair's RX (--queues): takes every frame without copying, sleeps on the call eventfd. */
    private static long rxLoop(GuestNic nic, int qp) {
        long n = 0;
        while (!stop) {
            n += nic.drainRx(qp, 100);
        }
        return n;
    }

    /** The 8-byte file the harness reads the received-frame count from, mapped shared. */
    private static MemorySegment countSegment(String path, Arena arena) throws java.io.IOException {
        try (FileChannel ch = FileChannel.open(Path.of(path), StandardOpenOption.CREATE, StandardOpenOption.READ,
                StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            return ch.map(FileChannel.MapMode.READ_WRITE, 0, 8, arena);
        }
    }

    private static final byte[] GUEST_MAC = {2, 0, 0, 0, 0, 2};

    /** testpmd txonly's frame: Ethernet/IPv4/UDP, 198.18.0.1:9 → 198.18.0.2:9, to 02:00:00:00:00:00. */
    static byte[] udp(int size) {
        byte[] f = new byte[size];
        ByteBuffer b = ByteBuffer.wrap(f);
        b.put(new byte[] {2, 0, 0, 0, 0, 0}).put(GUEST_MAC).putShort((short) 0x0800);
        ipv4(b, size - 14, 17, new byte[] {(byte) 198, 18, 0, 1}, new byte[] {(byte) 198, 18, 0, 2});
        b.putShort((short) 9).putShort((short) 9).putShort((short) (size - 34)).putShort((short) 0);
        return f;
    }

    /** One TCPv4 super-frame to the tap (10.99.0.2 → 10.99.0.1, tap MAC), checksum left partial. */
    static byte[] tcpGso(int size) {
        byte[] f = new byte[size];
        ByteBuffer b = ByteBuffer.wrap(f);
        b.put(new byte[] {2, 0, 0, 0, 0, 1}).put(GUEST_MAC).putShort((short) 0x0800);
        byte[] src = {10, 99, 0, 2};
        byte[] dst = {10, 99, 0, 1};
        ipv4(b, size - 14, 6, src, dst);
        b.putShort((short) 40000).putShort((short) 9).putInt(1).putInt(1);
        b.put((byte) 0x50).put((byte) 0x10).putShort((short) 0xffff);
        // NEEDS_CSUM: the checksum field holds the pseudo-header sum (not complemented).
        long s = sum16(src) + sum16(dst) + 6 + (size - 34);
        while ((s >> 16) != 0) {
            s = (s & 0xffff) + (s >> 16);
        }
        b.putShort((short) s).putShort((short) 0);
        return f;
    }

    /** USO segment size: 1472-byte datagrams, the most a 1500-byte MTU carries over IPv4. */
    static final int USO_GSO_SIZE = 1472;

    /**
     * A UDP frame of {@code size} bytes from the guest (10.99.0.2:40000) to the tap's address
     * (10.99.0.1:9, tap MAC): with {@code uso} one super-frame the kernel cuts into
     * {@link #USO_GSO_SIZE}-byte datagrams (partial checksum, GSO_UDP_L4), else one datagram with its
     * full checksum.
     */
    static UdpGso.Frame udpToHost(int size, boolean uso) {
        InetAddress src = UdpGso.address("10.99.0.2");
        InetAddress dst = UdpGso.address("10.99.0.1");
        int len = size - 42;
        byte[] payload = new byte[len];
        for (int i = 0; i < len; i++) {
            payload[i] = (byte) (i * 7 + (i >>> 8));
        }
        UdpGso.Frame f = UdpGso.build(GUEST_MAC, new byte[] {2, 0, 0, 0, 0, 1}, src, dst, 40000, 9, payload, 0, len,
                uso ? USO_GSO_SIZE : Integer.MAX_VALUE);
        if (uso) {
            return f;
        }
        byte[] fr = f.frame();
        int l4 = f.csumStart();
        fr[l4 + 6] = 0;
        fr[l4 + 7] = 0;
        int c = Packets.checksum(fr, l4, 8 + len, UdpGso.pseudo(src, dst, 8 + len));
        fr[l4 + 6] = (byte) ((c == 0 ? 0xffff : c) >>> 8);
        fr[l4 + 7] = (byte) (c == 0 ? 0xffff : c);
        return new UdpGso.Frame(fr, 0, VirtioNetHdr.GSO_NONE, 0, 0, 0, 0);
    }

    private static void ipv4(ByteBuffer b, int totalLen, int proto, byte[] src, byte[] dst) {
        int start = b.position();
        b.put((byte) 0x45).put((byte) 0).putShort((short) totalLen).putShort((short) 0).putShort((short) 0);
        b.put((byte) 64).put((byte) proto).putShort((short) 0).put(src).put(dst);
        long s = 0;
        for (int i = 0; i < 20; i += 2) {
            s += ((b.get(start + i) & 0xff) << 8) | (b.get(start + i + 1) & 0xff);
        }
        while ((s >> 16) != 0) {
            s = (s & 0xffff) + (s >> 16);
        }
        b.putShort(start + 10, (short) ~s);
    }

    private static long sum16(byte[] a) {
        return (((a[0] & 0xff) << 8) | (a[1] & 0xff)) + (((a[2] & 0xff) << 8) | (a[3] & 0xff));
    }

    /**
     * Turns an ICMP echo request into its reply in place: MACs and IPs swapped (the IPv4 header
     * checksum does not change), type 8 → 0 with the ICMP checksum adjusted incrementally (RFC 1624).
     */
    static boolean echoReply(byte[] f) {
        if (f.length < 42 || f[12] != 8 || f[13] != 0 || f[23] != 1) {
            return false;
        }
        int ihl = (f[14] & 0x0f) * 4;
        int icmp = 14 + ihl;
        if (f.length < icmp + 8 || f[icmp] != 8) {
            return false;
        }
        for (int i = 0; i < 6; i++) {
            byte t = f[i];
            f[i] = f[6 + i];
            f[6 + i] = t;
        }
        System.arraycopy(GUEST_MAC, 0, f, 6, 6);
        for (int i = 0; i < 4; i++) {
            byte t = f[26 + i];
            f[26 + i] = f[30 + i];
            f[30 + i] = t;
        }
        f[icmp] = 0;
        int c = ((f[icmp + 2] & 0xff) << 8) | (f[icmp + 3] & 0xff);
        int sum = c + 0x0800; // HC' = HC + m - m' with m = 0x0800, m' = 0 (one's complement)
        sum = (sum & 0xffff) + (sum >> 16);
        f[icmp + 2] = (byte) (sum >> 8);
        f[icmp + 3] = (byte) sum;
        return true;
    }
}
