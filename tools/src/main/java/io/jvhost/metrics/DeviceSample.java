package io.jvhost.metrics;

import io.jvhost.stats.QueueStats;
import io.jvhost.virtq.RingState;

import java.util.List;

/**
 * What the exporter reads from one device at one scrape: taken by the device's sampler on the
 * scraping thread, without stopping or waking the workers (opaque counter loads, volatile ring
 * states, histogram interval swaps).
 *
 * @param device     device name (label {@code device})
 * @param queues     per-queue-pair counters and histograms, in queue pair order
 * @param rings      per queue pair: the state of its RX ring [0] and TX ring [1]
 * @param connected  whether a vhost-user front-end is connected now
 * @param sessions   sessions begun since start (accepted connections, or connects in client mode)
 * @param offered    virtio feature bits the device offers
 * @param negotiated virtio feature bits of the current session (0 while none is connected)
 */
public record DeviceSample(String device, List<QueueStats> queues, List<RingState[]> rings, boolean connected,
                           long sessions, long offered, long negotiated) {
    public static final int RX = 0;
    public static final int TX = 1;
}
