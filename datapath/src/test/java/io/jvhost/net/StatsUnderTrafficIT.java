package io.jvhost.net;

import io.jvhost.device.NetDevice;
import io.jvhost.stats.DropReason;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.demo.Netns;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueStats;
import io.jvhost.stats.StatsRenderer;
import io.jvhost.engine.WorkerConfig;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static io.jvhost.virtio.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link NetDevice#stats()} and its JSON read concurrently with traffic: every counter, drop
 * counter and histogram count only grows; at every sample the device has not sent or received more
 * frames than the kernel's tap counters say it did; after the traffic the counters equal the
 * kernel's tap counters exactly (frames and bytes both ways), the batch histogram adds up to the
 * frames, and nothing was dropped.
 */
@Tag("privileged")
class StatsUnderTrafficIT {
    static final long MRG = bit(F_VERSION_1) | bit(RING_F_EVENT_IDX) | bit(NET_F_CSUM) | bit(NET_F_GUEST_CSUM) | bit(NET_F_MRG_RXBUF);
    static final int ROUNDS = 3000;
    static final Pattern JSON_COUNTER = Pattern.compile("\"([a-z_]+)\":(\\d+)");

    @BeforeEach
    void needsTap() {
        assumeTrue(Sh.canUseTap(), "needs root, /dev/net/tun and ip netns");
    }

    @Test
    @Timeout(180)
    void countersAreMonotonicAndMatchTheKernelWhileTrafficRuns() throws Exception {
        try (TapFixture f = new TapFixture(1, MRG, 1500, 256, 2048, WorkerConfig.defaults())) {
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            AtomicLong samples = new AtomicLong();
            AtomicLong jsonSamples = new AtomicLong();
            Thread pump = NetDeviceIT.pumper(f.stack, 0, stop);

            // Reader 1: stats() objects, checked against the kernel's tap counters read afterwards.
            Thread objects = reader("stats-reader", stop, failure, () -> {
                QueueStats prev = null;
                while (!stop.get()) {
                    QueueStats s = f.device.stats().get(0);
                    long[] k = tapCounters(f); // read after s: the kernel never counted less than we did
                    assertTrue(s.get(Counter.TX_FRAMES) <= k[0], "TX frames " + s.get(Counter.TX_FRAMES)
                            + " > kernel rx_packets " + k[0]);
                    assertTrue(s.get(Counter.RX_FRAMES) <= k[1], "RX frames " + s.get(Counter.RX_FRAMES)
                            + " > kernel tx_packets " + k[1]);
                    // Bytes are added at the end of a batch, frames one by one: bytes lag by < one batch.
                    int w = WorkerConfig.defaults().weight();
                    assertTrue(s.get(Counter.TX_BYTES) >= Packets.ETH_HLEN * (s.get(Counter.TX_FRAMES) - w));
                    assertTrue(s.get(Counter.RX_BYTES) >= Packets.ETH_HLEN * (s.get(Counter.RX_FRAMES) - w));
                    if (prev != null) {
                        assertMonotonic(prev, s);
                    }
                    prev = s;
                    samples.incrementAndGet();
                }
            });
            // Reader 2: the JSON rendering, parsed back.
            Thread json = reader("json-reader", stop, failure, () -> {
                long[] prev = null;
                while (!stop.get()) {
                    long[] v = parse(StatsRenderer.json(f.device.stats()));
                    if (prev != null) {
                        for (int i = 0; i < v.length; i++) {
                            assertTrue(v[i] >= prev[i], "JSON value " + i + " went back: " + prev[i] + " -> " + v[i]);
                        }
                    }
                    prev = v;
                    jsonSamples.incrementAndGet();
                    Thread.sleep(1);
                }
            });

            long hostSent = 0;
            long hostSentBytes = 0;
            long echoes = 0;
            DatagramChannel ch = Netns.in(f.ns, () -> DatagramChannel.open().bind(new InetSocketAddress(0)));
            try {
                ch.socket().setSoTimeout(3000);
                ch.connect(new InetSocketAddress(Packets.ipString(f.guestIp), GuestStack.UDP_ECHO_PORT));
                ByteBuffer in = ByteBuffer.allocate(2048);
                long end = System.nanoTime() + 60_000_000_000L;
                for (int i = 0; i < ROUNDS && System.nanoTime() < end && failure.get() == null; i++) {
                    int size = 1 + (i * 37) % 1472;
                    ByteBuffer out = ByteBuffer.allocate(size);
                    out.put(0, (byte) i);
                    ch.write(out);
                    hostSent++;
                    hostSentBytes += 42 + size; // Ethernet + IPv4 + UDP headers; the kernel does not pad on a tap
                    in.clear();
                    ch.read(in);
                    assertEquals(size, in.position(), "echo of round " + i);
                    echoes++;
                }
            } finally {
                ch.close();
                Thread.sleep(200); // let the readers take a few samples of the quiet device
                stop.set(true);
                pump.join();
                objects.join();
                json.join();
            }
            if (failure.get() != null) {
                fail("stats reader: " + failure.get() + "\n" + StatsRenderer.table(f.device.stats()), failure.get());
            }
            // The kernel may still emit a frame of its own (ARP refresh, ...) after the last echo: wait
            // until the worker has caught up with the tap's counters before comparing them exactly.
            long[] k = tapCounters(f);
            QueueStats s = f.device.stats().get(0);
            // A snapshot reads the counters and the histograms one after the other: a batch between the
            // two shows up as a mismatch, so wait for a snapshot taken while the worker was quiet.
            for (long deadline = System.nanoTime() + 10_000_000_000L; System.nanoTime() < deadline
                    && (k[0] != s.get(Counter.TX_FRAMES) || k[1] != s.get(Counter.RX_FRAMES)
                    || s.get(Counter.TX_BATCHES) + s.get(Counter.RX_BATCHES) != s.batchSizes().getTotalCount()
                    || s.get(Counter.TX_BATCHES) + s.get(Counter.RX_BATCHES) != s.serviceTime().getTotalCount()); ) {
                Thread.sleep(50);
                k = tapCounters(f);
                s = f.device.stats().get(0);
            }
            String table = StatsRenderer.table(f.device.stats());
            System.out.printf(Locale.ROOT, "stats under traffic: %d rounds, %d object samples, %d JSON samples%n%s%n",
                    hostSent, samples.get(), jsonSamples.get(), table);
            assertTrue(samples.get() > 10 && jsonSamples.get() > 10, "readers ran while traffic ran");
            assertEquals(hostSent, echoes);
            assertEquals(k[0], s.get(Counter.TX_FRAMES), "TX frames == kernel tap rx_packets\n" + table);
            assertEquals(k[1], s.get(Counter.RX_FRAMES), "RX frames == kernel tap tx_packets\n" + table);
            assertEquals(k[2], s.get(Counter.TX_BYTES), "TX bytes == kernel tap rx_bytes\n" + table);
            assertEquals(k[3], s.get(Counter.RX_BYTES), "RX bytes == kernel tap tx_bytes\n" + table);
            assertTrue(s.get(Counter.RX_FRAMES) >= hostSent && s.get(Counter.TX_FRAMES) >= echoes, table);
            assertTrue(s.get(Counter.RX_BYTES) >= hostSentBytes, table);
            assertEquals(0, s.totalDrops(), table);
            // Every batch is in the histograms, and the batch sizes add up to the frames.
            long batches = s.get(Counter.TX_BATCHES) + s.get(Counter.RX_BATCHES);
            assertEquals(batches, s.batchSizes().getTotalCount(), table);
            assertEquals(batches, s.serviceTime().getTotalCount(), table);
            assertEquals(s.get(Counter.TX_FRAMES) + s.get(Counter.RX_FRAMES), sum(s.batchSizes()), table);
        }
    }

    interface Body {
        void run() throws Exception;
    }

    private static Thread reader(String name, AtomicBoolean stop, AtomicReference<Throwable> failure, Body body) {
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
                stop.set(true);
            }
        }, name);
        t.setDaemon(true);
        t.start();
        return t;
    }

    private static void assertMonotonic(QueueStats a, QueueStats b) {
        for (int i = 0; i < a.values().length; i++) {
            assertTrue(b.values()[i] >= a.values()[i], "value " + i + " went back: " + a.values()[i] + " -> "
                    + b.values()[i]);
        }
        assertTrue(b.serviceTime().getTotalCount() >= a.serviceTime().getTotalCount());
        assertTrue(b.batchSizes().getTotalCount() >= a.batchSizes().getTotalCount());
    }

    /** Counter and drop values of queue 0 in JSON order. */
    private static long[] parse(String json) {
        int start = json.indexOf("\"counters\":{");
        int endDrops = json.indexOf('}', json.indexOf("\"drops\":{"));
        assertTrue(start > 0 && endDrops > start, json);
        Matcher m = JSON_COUNTER.matcher(json.substring(start, endDrops));
        List<Long> out = new ArrayList<>();
        while (m.find()) {
            out.add(Long.parseLong(m.group(2)));
        }
        assertEquals(Counter.count() + DropReason.count(), out.size(), json);
        return out.stream().mapToLong(Long::longValue).toArray();
    }

    /** The tap's kernel counters: {rx_packets, tx_packets, rx_bytes, tx_bytes} (kernel's view: rx = from us). */
    static long[] tapCounters(TapFixture f) {
        String dir = "/sys/class/net/" + f.tapName + "/statistics/";
        String[] v = f.nsExec("cat", dir + "rx_packets", dir + "tx_packets", dir + "rx_bytes", dir + "tx_bytes")
                .trim().split("\\s+");
        return new long[]{Long.parseLong(v[0]), Long.parseLong(v[1]), Long.parseLong(v[2]), Long.parseLong(v[3])};
    }

    private static long sum(Histogram h) {
        long s = 0;
        for (HistogramIterationValue v : h.recordedValues()) {
            s += v.getValueIteratedTo() * v.getCountAtValueIteratedTo();
        }
        return s;
    }
}
