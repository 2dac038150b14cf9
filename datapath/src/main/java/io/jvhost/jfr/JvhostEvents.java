package io.jvhost.jfr;

import io.jvhost.virtio.VirtioFeatures;
import jdk.jfr.Event;
import jdk.jfr.EventType;

import java.util.List;

/**
 * The one place that emits jvhost's Java Flight Recorder events: every call site is a single line
 * calling one of these static methods. Event names are {@value #PREFIX}{@code <Type>}; enable them
 * with a recording ({@code jvhost --jfr=FILE}, or {@code -XX:StartFlightRecording} in
 * {@code JVHOST_JAVA_OPTS}); they are enabled by default in any recording.
 *
 * <p>Cost: control-path events allocate their event object (a few per session or ring change);
 * {@link #slowBatch} is called only for a batch that already exceeded the threshold, so the datapath
 * allocates nothing for JFR while batches are fast, recording or not.
 *
 * <p>Direction: vring {@code 2n} is queue pair n's receive queue ({@code rx}), {@code 2n+1} its
 * transmit queue ({@code tx}) — virtio-net's numbering, seen from the device.
 *
 * <p>Threading: any thread.
 */
public final class JvhostEvents {
    /** Prefix of every event name, e.g. {@code io.jvhost.RingBroken}. */
    public static final String PREFIX = "io.jvhost.";
    public static final String RX = "rx";
    public static final String TX = "tx";
    /** Every jvhost event type (a recording enables these explicitly). */
    public static final List<Class<? extends Event>> TYPES = List.of(SessionConnectedEvent.class,
            SessionDisconnectedEvent.class, FeaturesNegotiatedEvent.class, MemoryTableEvent.class, RingStartedEvent.class,
            RingStoppedEvent.class, RingBrokenEvent.class, TapErrorEvent.class, SlowBatchEvent.class, DirtyLogEvent.class);

    /** Looked up on the first slow batch (a benign race: every thread finds the same type). */
    private static volatile EventType slowBatchType;

    private JvhostEvents() {
    }

    /** The direction of vring {@code vring} of a virtio-net device. */
    public static String direction(int vring) {
        return (vring & 1) == 0 ? RX : TX;
    }

    public static void sessionConnected(String device) {
        SessionConnectedEvent e = new SessionConnectedEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.commit();
        }
    }

    public static void sessionDisconnected(String device, long messages) {
        SessionDisconnectedEvent e = new SessionDisconnectedEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.messages = messages;
            e.commit();
        }
    }

    public static void featuresNegotiated(String device, long features) {
        FeaturesNegotiatedEvent e = new FeaturesNegotiatedEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.features = features;
            e.names = VirtioFeatures.describe(features);
            e.commit();
        }
    }

    public static void memoryTable(String device, int regions, long bytes) {
        MemoryTableEvent e = new MemoryTableEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.regions = regions;
            e.bytes = bytes;
            e.commit();
        }
    }

    public static void ringStarted(String device, int vring, int size, int base, boolean enabled) {
        RingStartedEvent e = new RingStartedEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.queuePair = vring / 2;
            e.direction = direction(vring);
            e.size = size;
            e.base = base;
            e.enabled = enabled;
            e.commit();
        }
    }

    public static void ringStopped(String device, int vring, int base) {
        RingStoppedEvent e = new RingStoppedEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.queuePair = vring / 2;
            e.direction = direction(vring);
            e.base = base;
            e.commit();
        }
    }

    public static void ringBroken(String device, int queuePair, String direction, Enum<?> reason, String message) {
        RingBrokenEvent e = new RingBrokenEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.queuePair = queuePair;
            e.direction = direction;
            e.reason = reason == null ? null : reason.name();
            e.message = message;
            e.commit();
        }
    }

    public static void tapError(String device, int queuePair, String direction, String error) {
        TapErrorEvent e = new TapErrorEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.queuePair = queuePair;
            e.direction = direction;
            e.error = error;
            e.commit();
        }
    }

    /**
     * Called by the datapath only for a batch over {@code threshold}. Allocates (one event) only when,
     * besides, a recording has the event enabled: on a loaded machine slow batches are frequent, and
     * without a recording they must cost nothing.
     */
    public static void slowBatch(String device, int queuePair, String direction, int frames, long nanos, long threshold) {
        EventType type = slowBatchType;
        if (type == null) {
            type = EventType.getEventType(SlowBatchEvent.class);
            slowBatchType = type;
        }
        if (!type.isEnabled()) {
            return;
        }
        SlowBatchEvent e = new SlowBatchEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.queuePair = queuePair;
            e.direction = direction;
            e.frames = frames;
            e.serviceTime = nanos;
            e.threshold = threshold;
            e.commit();
        }
    }

    /** Dirty-page logging switched on (with the log's size) or off; for the live-migration work. */
    public static void dirtyLog(String device, boolean on, long logBytes) {
        DirtyLogEvent e = new DirtyLogEvent();
        if (e.shouldCommit()) {
            e.device = device;
            e.on = on;
            e.logBytes = logBytes;
            e.commit();
        }
    }
}
