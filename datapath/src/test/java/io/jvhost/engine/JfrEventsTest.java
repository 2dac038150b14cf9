package io.jvhost.engine;

import io.jvhost.config.Configuration;
import io.jvhost.engine.MemoryShrinkTest.Guest;
import io.jvhost.engine.MemoryShrinkTest.SocketDevice;
import io.jvhost.nativ.Fds;
import io.jvhost.stats.Counter;
import io.jvhost.virtq.RingState;
import io.jvhost.jfr.JvhostEvents;
import io.jvhost.virtq.VirtqError;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every jvhost JFR event, produced by a real vhost-user session (the Java driver over a unix socket;
 * the device's "tap" is a SOCK_SEQPACKET pair, so no root) and read back from the recording file
 * with {@link RecordingFile}: session connected / disconnected, features negotiated, memory table
 * installed, rings started / stopped / broken (with the reason), a tap error (the host end of the
 * "tap" closed: EPIPE), slow batches (threshold 0: every batch) and dirty logging (emitted directly:
 * the migration work will call it).
 */
class JfrEventsTest {

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void aSessionsLifeIsInTheRecording() throws Exception {
        Path file = Files.createTempFile("jvhost-jfr-", ".jfr");
        try (Recording rec = new Recording()) {
            JvhostEvents.TYPES.forEach(rec::enable);
            rec.start();
            String previous = System.setProperty(Configuration.SLOW_BATCH_NANOS.property(), "0");
            SocketDevice dev;
            try {
                dev = new SocketDevice("jfr-dev");
            } finally {
                restore(previous);
            }
            try (dev) {
                Guest g = new Guest(dev);
                try {
                    MemoryShrinkTest.exchange(dev, g, "jfr");
                    assertEquals(RingState.ENABLED, dev.worker.ringState(QueuePair.TX));

                    // The host end of the "tap" goes away: the next guest frame fails with EPIPE.
                    Fds.close(dev.host());
                    dev.sock[1] = -1;
                    byte[] f = Arrays.copyOfRange(MemoryShrinkTest.frame(200, 0x44), MemoryShrinkTest.HDR,
                            MemoryShrinkTest.HDR + 200);
                    assertTrue(g.nic.send(0, f, 5000));
                    assertTrue(g.nic.flushTx(0, 5000), "the dropped frame's chain came back");

                    dev.worker.worker().call(() -> {
                        dev.worker.pair().ring(QueuePair.RX).queue().markBroken(VirtqError.MEMORY_FAULT,
                                "test: front-end shrank memory");
                        return null;
                    });
                    assertEquals(RingState.BROKEN, dev.worker.ringState(QueuePair.RX));
                    assertEquals(1, dev.worker.counters().get(Counter.RX_RING_BROKEN));
                } finally {
                    g.close();
                }
                JvhostEvents.dirtyLog("jfr-dev", true, 4096);
                // The session ends on the control thread after the client's close.
                long t0 = System.nanoTime();
                while (dev.server.sessionActive() && System.nanoTime() - t0 < 10_000_000_000L) {
                    Thread.sleep(5);
                }
                assertEquals(RingState.STOPPED, dev.worker.ringState(QueuePair.TX));
            }
            rec.stop();
            rec.dump(file);
        }
        try {
            List<RecordedEvent> all = RecordingFile.readAllEvents(file);
            Map<String, List<RecordedEvent>> byType = all.stream()
                    .filter(e -> e.getEventType().getName().startsWith(JvhostEvents.PREFIX))
                    .filter(e -> !e.hasField("device") || "jfr-dev".equals(e.getString("device")))
                    .collect(Collectors.groupingBy(e -> e.getEventType().getName().substring(JvhostEvents.PREFIX.length())));
            String seen = byType.entrySet().stream().map(e -> e.getKey() + "×" + e.getValue().size())
                    .collect(Collectors.joining(", "));
            System.out.println("JFR events: " + seen);

            one(byType, "SessionConnected", e -> true, seen);
            one(byType, "SessionDisconnected", e -> e.getLong("messages") > 10, seen);
            one(byType, "FeaturesNegotiated", e -> e.getString("names").contains("mrg-rxbuf")
                    && (e.getLong("features") & (1L << 32)) != 0, seen);
            one(byType, "MemoryTableInstalled", e -> e.getInt("regions") == 1 && e.getLong("bytes") > 0, seen);
            one(byType, "RingStarted", e -> "tx".equals(e.getString("direction")) && e.getInt("queuePair") == 0
                    && e.getInt("size") == MemoryShrinkTest.RING, seen);
            one(byType, "RingStarted", e -> "rx".equals(e.getString("direction")), seen);
            one(byType, "RingStopped", e -> "tx".equals(e.getString("direction")) && e.getInt("base") > 0, seen);
            one(byType, "RingBroken", e -> "rx".equals(e.getString("direction"))
                    && "MEMORY_FAULT".equals(e.getString("reason")) && e.getString("message").contains("shrank"), seen);
            one(byType, "TapError", e -> "tx".equals(e.getString("direction")) && e.getString("error").contains("EPIPE"), seen);
            one(byType, "SlowBatch", e -> e.getInt("frames") >= 1 && e.getLong("serviceTime") > 0
                    && e.getLong("threshold") == 0, seen);
            one(byType, "DirtyLog", e -> e.getBoolean("on") && e.getLong("logBytes") == 4096, seen);
        } finally {
            Files.deleteIfExists(file);
        }
    }

    private static void restore(String previous) {
        if (previous == null) {
            System.clearProperty(Configuration.SLOW_BATCH_NANOS.property());
        } else {
            System.setProperty(Configuration.SLOW_BATCH_NANOS.property(), previous);
        }
    }

    private static void one(Map<String, List<RecordedEvent>> byType, String type, Predicate<RecordedEvent> check,
                            String seen) {
        List<RecordedEvent> events = byType.getOrDefault(type, List.of());
        assertFalse(events.isEmpty(), "no " + type + " event; seen: " + seen);
        assertTrue(events.stream().anyMatch(check), type + " events without the expected fields: " + events);
    }
}
