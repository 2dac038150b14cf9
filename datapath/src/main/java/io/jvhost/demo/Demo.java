package io.jvhost.demo;

import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.RingOptions;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import io.jvhost.virtq.RingLayout;
import io.jvhost.device.NetDevice;
import org.HdrHistogram.Histogram;

import java.io.IOException;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code tools/jvhost demo}: the first thing a newcomer runs. Creates a private network namespace
 * with a tap in it, starts a jvhost device on the tap and the Java virtio driver as the guest, then
 * runs UDP guest → host, UDP host → guest and an ICMP ping-pong for latency, and prints throughput,
 * a latency percentile table and the device's per-queue stats. Everything it created is removed at
 * the end, on errors and on Ctrl-C. Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) for the
 * namespace and the tap. {@code --packed} and {@code --in-order} make the guest ask for packed
 * virtqueues and VIRTIO_F_IN_ORDER; when the device does not offer them the demo says so and stops
 * (the driver does not fall back to split rings).
 */
public final class Demo {
    private Demo() {
    }

    private static final long GUEST_FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.NET_F_CSUM)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_GUEST_CSUM) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
    private static final int RING = 256;
    private static final int PAYLOAD = 1472;
    private static final int UDP_PORT = 9000;

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /**
     * Runs the demo. Options: {@code --seconds N} per phase (default 3), {@code --packed},
     * {@code --in-order}.
     *
     * @return process exit status (0 ok)
     */
    public static int run(String[] args) {
        PrintStream out = System.out;
        double seconds = 3;
        boolean packed = false;
        boolean inOrder = false;
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--seconds") && i + 1 < args.length) {
                seconds = Double.parseDouble(args[++i]);
            } else if (args[i].equals("--packed")) {
                packed = true;
            } else if (args[i].equals("--in-order")) {
                inOrder = true;
            } else if (args[i].equals("--help") || args[i].equals("-h")) {
                out.println("usage: jvhost demo [--seconds N] [--packed] [--in-order]   (needs root: creates a netns and a tap)");
                out.println("  --packed    the guest uses packed virtqueues (VIRTIO_F_RING_PACKED) instead of split ones");
                out.println("  --in-order  the guest negotiates VIRTIO_F_IN_ORDER");
                return 0;
            } else {
                System.err.println("demo: unknown option " + args[i]);
                return 2;
            }
        }
        if (!Files.exists(Path.of("/dev/net/tun"))) {
            System.err.println("demo: /dev/net/tun is missing (modprobe tun, or expose it to the container)");
            return 1;
        }
        String sfx = Long.toString(ProcessHandle.current().pid() % 46656 + 46656, 36).substring(1)
                + Integer.toString((int) (Math.random() * 1296) + 1296, 36).substring(1);
        String ns = "jvhost-demo-" + sfx;
        String tap = "jvdemo" + sfx;
        int subnet = 200 + (int) (Math.random() * 50);
        int hostIp = Packets.ip(10, 213, subnet, 1);
        int guestIp = Packets.ip(10, 213, subnet, 2);
        AtomicBoolean cleaned = new AtomicBoolean();
        Runnable cleanup = () -> {
            if (cleaned.compareAndSet(false, true)) {
                sh(false, "ip", "netns", "del", ns);
                sh(false, "ip", "link", "del", tap);
            }
        };
        Thread hook = new Thread(cleanup, "jvhost-demo-cleanup");
        Runtime.getRuntime().addShutdownHook(hook);
        RingOptions rings = new RingOptions(packed ? RingLayout.PACKED : RingLayout.SPLIT, inOrder);
        long guestFeatures = rings.applyTo(GUEST_FEATURES);
        NetDevice device = null;
        DriverMemory mem = null;
        GuestNic nic = null;
        try {
            out.printf("jvhost demo: netns %s, tap %s (%s/24), Java guest %s, %s rings%n", ns, tap, Packets.ipString(hostIp),
                    Packets.ipString(guestIp), rings);
            sh(true, "ip", "netns", "add", ns);
            device = new NetDevice(NetDevice.Config.of("demo", tap, 1).withMtu(1500).withWorker(WorkerConfig.defaults()));
            String unsupported = rings.unsupportedBy(device.features());
            if (unsupported != null) {
                System.err.println("demo: jvhost cannot run " + rings + " rings yet: " + unsupported
                        + ". Run the demo without --packed / --in-order.");
                return 1;
            }
            sh(true, "ip", "link", "set", tap, "netns", ns);
            sh(true, "ip", "-n", ns, "link", "set", tap, "up");
            sh(true, "ip", "-n", ns, "link", "set", "lo", "up");
            sh(true, "ip", "-n", ns, "addr", "add", Packets.ipString(hostIp) + "/24", "dev", tap);
            mem = DriverMemory.allocate(GuestNic.ramNeeded(1, RING, 2048, guestFeatures), DriverMemory.DEFAULT_GPA_BASE);
            nic = new GuestNic(mem, 1, guestFeatures, RING, 2048);
            nic.attach(device, mem.guestMemory(1));
            GuestStack stack = new GuestStack(nic, new byte[]{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, guestIp);
            byte[] hostMac = stack.resolve(0, hostIp, 3000);
            out.printf("ARP: host %s is at %s%n%n", Packets.ipString(hostIp), mac(hostMac));

            guestToHost(out, ns, stack, hostMac, hostIp, seconds);
            hostToGuest(out, ns, stack, guestIp, seconds);
            latency(out, stack, hostMac, hostIp, seconds);
            out.println();
            out.println("device stats:");
            out.print(StatsRenderer.table(device.stats()));
            return 0;
        } catch (RuntimeException | IOException e) {
            System.err.println("demo failed: " + e.getMessage());
            if (e.getMessage() != null && (e.getMessage().contains("EPERM") || e.getMessage().contains("Operation not permitted"))) {
                System.err.println("hint: the demo needs root (it creates a network namespace and a tap)");
            }
            return 1;
        } finally {
            if (device != null) {
                device.close();
            }
            if (nic != null) {
                nic.close();
            }
            if (mem != null) {
                mem.close();
            }
            cleanup.run();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException ignored) {
                // already shutting down: the hook runs (and finds nothing left to do)
            }
        }
    }

    private static void guestToHost(PrintStream out, String ns, GuestStack stack, byte[] hostMac, int hostIp,
                                    double seconds) throws IOException {
        DatagramChannel sink = Netns.in(ns, () -> DatagramChannel.open().bind(new InetSocketAddress(UDP_PORT)));
        AtomicLong bytes = new AtomicLong();
        AtomicLong frames = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        Thread reader = Thread.ofPlatform().name("demo-host-sink").daemon().start(() -> {
            ByteBuffer b = ByteBuffer.allocateDirect(65536);
            while (!stop.get()) {
                try {
                    b.clear();
                    if (sink.receive(b) != null) {
                        bytes.addAndGet(b.position());
                        frames.incrementAndGet();
                    }
                } catch (IOException e) {
                    return;
                }
            }
        });
        byte[] frame = Packets.udp(stack.mac(), hostMac, stack.ip(), hostIp, 40000, UDP_PORT, new byte[PAYLOAD], 0);
        GuestNic nic = stack.nic();
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long start = System.nanoTime();
        long sent = 0;
        while (System.nanoTime() < end) {
            for (int i = 0; i < 32; i++) {
                if (nic.send(0, frame, 100)) {
                    sent++;
                }
            }
            GuestNic.Received r;
            while ((r = nic.receive(0, 0)) != null) {
                stack.handle(0, r);
            }
        }
        nic.flushTx(0, 1000);
        sleepMs(200);
        double secs = (System.nanoTime() - start) / 1e9;
        stop.set(true);
        sink.close();
        try {
            reader.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        out.printf(Locale.ROOT, "guest -> host  UDP %d B: sent %,d, host received %,d frames, %.0f Mbit/s, %,.0f frames/s%n",
                PAYLOAD, sent, frames.get(), bytes.get() * 8 / secs / 1e6, frames.get() / secs);
        out.println("  (a UDP flood: what the receiving socket cannot keep up with the kernel drops there;"
                + " jvhost's own drops are the 'drops' column below)");
    }

    private static void hostToGuest(PrintStream out, String ns, GuestStack stack, int guestIp, double seconds)
            throws IOException {
        DatagramChannel src = Netns.in(ns, DatagramChannel::open);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong sent = new AtomicLong();
        InetSocketAddress dst = new InetSocketAddress(Packets.ipString(guestIp), UDP_PORT);
        Thread writer = Thread.ofPlatform().name("demo-host-source").daemon().start(() -> {
            ByteBuffer b = ByteBuffer.allocateDirect(PAYLOAD);
            while (!stop.get()) {
                try {
                    b.clear();
                    src.send(b, dst);
                    sent.incrementAndGet();
                } catch (IOException e) {
                    return;
                }
            }
        });
        long frames = 0;
        long bytes = 0;
        long start = System.nanoTime();
        long end = start + (long) (seconds * 1e9);
        GuestNic nic = stack.nic();
        while (System.nanoTime() < end) {
            GuestNic.Received r = nic.receive(0, 100);
            if (r != null && !stack.handle(0, r) && Packets.etherType(r.frame()) == Packets.ETHERTYPE_IPV4
                    && Packets.ipProto(r.frame()) == Packets.PROTO_UDP) {
                frames++;
                bytes += r.frame().length - Packets.ETH_HLEN - Packets.IP_HLEN - Packets.UDP_HLEN;
            }
        }
        double secs = (System.nanoTime() - start) / 1e9;
        stop.set(true);
        try {
            writer.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        src.close();
        while (nic.receive(0, 50) != null) {
            // drain what is still queued
        }
        out.printf(Locale.ROOT, "host -> guest  UDP %d B: host sent %,d, guest received %,d frames, %.0f Mbit/s, %,.0f frames/s%n",
                PAYLOAD, sent.get(), frames, bytes * 8 / secs / 1e6, frames / secs);
    }

    private static void latency(PrintStream out, GuestStack stack, byte[] hostMac, int hostIp, double seconds) {
        Histogram h = new Histogram(1, TimeUnit.SECONDS.toNanos(10), 3);
        GuestNic nic = stack.nic();
        byte[] payload = new byte[56];
        long end = System.nanoTime() + (long) (seconds * 1e9);
        int seq = 0;
        long lost = 0;
        while (System.nanoTime() < end) {
            seq = (seq + 1) & 0xffff;
            long t0 = System.nanoTime();
            nic.send(0, Packets.icmpEcho(stack.mac(), hostMac, stack.ip(), hostIp, Packets.ICMP_ECHO_REQUEST, 42, seq,
                    payload), 1000);
            boolean got = false;
            while (!got) {
                GuestNic.Received r = nic.receive(0, 1000);
                if (r == null) {
                    lost++;
                    break;
                }
                byte[] f = r.frame();
                if (Packets.etherType(f) == Packets.ETHERTYPE_IPV4 && Packets.ipProto(f) == Packets.PROTO_ICMP
                        && Packets.u16(f, Packets.l4(f) + 6) == seq) {
                    h.recordValue(Math.min(System.nanoTime() - t0, h.getHighestTrackableValue()));
                    got = true;
                } else {
                    stack.handle(0, r);
                }
            }
        }
        out.printf(Locale.ROOT, "%nround trip guest -> jvhost -> tap -> kernel ICMP echo -> guest (%,d pings, %d lost):%n",
                h.getTotalCount(), lost);
        out.print(StatsRenderer.percentiles("  RTT", h));
    }

    private static String mac(byte[] m) {
        StringBuilder b = new StringBuilder();
        for (byte x : m) {
            if (!b.isEmpty()) {
                b.append(':');
            }
            b.append(String.format("%02x", x & 0xff));
        }
        return b.toString();
    }

    private static void sleepMs(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void sh(boolean check, String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String o = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
            if (check && p.exitValue() != 0) {
                throw new IllegalStateException(String.join(" ", cmd) + ": " + o.trim());
            }
        } catch (IOException e) {
            if (check) {
                throw new IllegalStateException(String.join(" ", cmd) + ": " + e.getMessage(), e);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
