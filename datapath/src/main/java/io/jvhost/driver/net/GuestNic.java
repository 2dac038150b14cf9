package io.jvhost.driver.net;

import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.virtio.DeviceStatus;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverQueue;
import io.jvhost.driver.RingOptions;
import io.jvhost.driver.NetBufferLayout;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Poll;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.vhostuser.DeviceBackend;
import io.jvhost.virtq.RingSetup;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The Java "guest" virtio-net NIC: RX/TX rings per queue pair (split, or packed when the features
 * carry VIRTIO_F_RING_PACKED; IN_ORDER honoured; {@link DriverQueue}) in {@link DriverMemory}, buffers
 * laid out as Linux's virtio_net lays them out, kick/call eventfds. It attaches to a
 * {@link DeviceBackend} in-process (the way a vhost-user session would drive it) — tests, the demo
 * and benchmarks use it as the guest.
 *
 * <p>Threading: each queue pair is driven by one thread at a time ({@link #send}, {@link #receive}
 * for that pair); different pairs may be driven by different threads.
 */
public final class GuestNic implements AutoCloseable {
    /** How the guest posts RX buffers. */
    public enum RxMode {
        /** MRG_RXBUF: one page-sized buffer per chain, frames span several (num_buffers). */
        MERGEABLE,
        /** Without MRG_RXBUF and without guest GSO: one 1518-byte (+header) buffer per chain. */
        SMALL,
        /** Without MRG_RXBUF, with guest GSO: 19-descriptor chains of pages (≥ 65562 bytes). */
        BIG
    }

    /** A received frame: contents without the virtio-net header, plus the header fields. */
    public record Received(byte[] frame, int flags, int gsoType, int gsoSize, int csumStart, int csumOffset,
                           int numBuffers) {
    }

    private final DriverMemory mem;
    private final long features;
    private final int hdrLen;
    private final RxMode rxMode;
    private final int ringSize;
    private final Pair[] pairs;
    private final int maxTxFrame;

    /**
     * @param mem        guest RAM (rings and buffers are allocated from it)
     * @param queuePairs queue pairs to create
     * @param features   the features the guest acknowledges (must be offered by the device); the ring
     *                   bits among them ({@link RingOptions}) choose the ring format
     * @param ringSize   descriptors per ring
     * @param maxTxFrame largest frame the guest will send (65550 for TSO)
     */
    public GuestNic(DriverMemory mem, int queuePairs, long features, int ringSize, int maxTxFrame) {
        this.mem = mem;
        this.features = features;
        this.hdrLen = VirtioNetHdr.size(features);
        this.ringSize = ringSize;
        this.maxTxFrame = maxTxFrame;
        boolean mrg = VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF);
        this.rxMode = mrg ? RxMode.MERGEABLE : VirtioFeatures.guestGso(features) ? RxMode.BIG : RxMode.SMALL;
        this.pairs = new Pair[queuePairs];
        for (int i = 0; i < queuePairs; i++) {
            pairs[i] = new Pair(i);
        }
    }

    /** Bytes of guest RAM a NIC with these parameters needs (rings, buffers), with slack. */
    public static long ramNeeded(int queuePairs, int ringSize, int maxTxFrame, long features) {
        long rx = VirtioFeatures.has(features, VirtioFeatures.NET_F_MRG_RXBUF) ? NetBufferLayout.rxMergeableBufferSize()
                : VirtioFeatures.guestGso(features) ? NetBufferLayout.rxBigBufferSize()
                : NetBufferLayout.rxSmallBufferSize(VirtioNetHdr.SIZE);
        long tx = NetBufferLayout.txBufferSize(maxTxFrame);
        long perPair = (long) ringSize * (rx + tx + 4096) + 8 * 4096L * 4;
        long total = perPair * queuePairs + (1 << 20);
        return (total + 0x1f_ffff) & ~0x1f_ffffL;
    }

    public long features() {
        return features;
    }

    public int hdrLen() {
        return hdrLen;
    }

    public RxMode rxMode() {
        return rxMode;
    }

    public int queuePairs() {
        return pairs.length;
    }

    /**
     * Drives {@code device} the way a vhost-user session would: features, memory table, then every
     * ring (RX posted full of buffers first).
     */
    public void attach(DeviceBackend device, GuestMemory table) {
        String rings = RingOptions.missing(features, device.features());
        if (rings != null) {
            throw new IllegalStateException(rings);
        }
        device.onFeaturesSet(features);
        device.onMemoryTable(table);
        for (Pair p : pairs) {
            // The base is where the device starts: taken before the RX buffers are posted.
            RingSetup rx = p.ringSetup(p.rx, p.rxKick, p.rxCall);
            p.fillRx();
            device.startRing(2 * p.index, rx);
            device.startRing(2 * p.index + 1, p.ringSetup(p.tx, p.txKick, p.txCall));
        }
    }

    /** The ring format and ordering this NIC's features select. */
    public RingOptions rings() {
        return RingOptions.of(features);
    }

    /**
     * Drives a back-end over vhost-user the way QEMU does: feature and protocol negotiation, the
     * memory table (the RAM must be memfd-backed, see {@link DriverMemory#memfd}), then NUM, BASE,
     * ADDR, KICK, CALL and ENABLE for every ring, RX posted full of buffers first.
     *
     * @return the acknowledged features
     * @throws IllegalStateException when the back-end does not offer every feature this NIC uses
     *                               (before SET_FEATURES when it lacks the ring format or IN_ORDER asked for)
     */
    public long attachVhostUser(VhostUserClient client, long wantProtocol) {
        long ack = client.negotiate(features, wantProtocol, features & RingOptions.RING_BITS);
        long missing = features & ~ack;
        if (missing != 0) {
            throw new IllegalStateException("back-end does not offer features 0x" + Long.toHexString(missing));
        }
        // With STATUS negotiated the driver reports its progress as virtio-user does; DPDK's vhost
        // back-end treats the device as ready only once DRIVER_OK arrives.
        boolean status = (client.protocolFeatures() & (1L << VhostUserMessage.PROTOCOL_F_STATUS)) != 0;
        int driver = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK;
        if (status) {
            client.setStatus(driver);
        }
        client.setMemTable(java.util.List.of(mem.region()));
        for (Pair p : pairs) {
            // setupRing sends the ring's current avail index as BASE: set up before posting buffers.
            client.setupRing(2 * p.index, p.rx, p.rxKick, p.rxCall);
            client.setupRing(2 * p.index + 1, p.tx, p.txKick, p.txCall);
            p.fillRx();
            client.setVringEnable(2 * p.index, true);
            client.setVringEnable(2 * p.index + 1, true);
        }
        if (status) {
            client.setStatus(driver | DeviceStatus.DRIVER_OK);
        }
        return ack;
    }

    /** Stops every ring on {@code device}. */
    public void detach(DeviceBackend device) {
        for (Pair p : pairs) {
            device.stopRing(2 * p.index);
            device.stopRing(2 * p.index + 1);
        }
    }

    // ------------------------------------------------------------------------------------------
    // TX

    /**
     * Sends one frame on {@code qp} with a plain (no offload) header. Reclaims finished TX buffers,
     * waits up to {@code timeoutMs} for a free one.
     *
     * @return false when no TX buffer became free in time
     */
    public boolean send(int qp, byte[] frame, int timeoutMs) {
        return send(qp, frame, 0, frame.length, 0, 0, 0, 0, 0, 0, timeoutMs);
    }

    /** Sends one frame with the given virtio-net header fields (offloads). */
    public boolean send(int qp, byte[] frame, int off, int len, int flags, int gsoType, int hdrLenField, int gsoSize,
                        int csumStart, int csumOffset, int timeoutMs) {
        if (len > maxTxFrame) {
            throw new IllegalArgumentException("frame " + len + " > max " + maxTxFrame);
        }
        Pair p = pairs[qp];
        int buf = p.takeTxBuffer(timeoutMs);
        if (buf < 0) {
            return false;
        }
        MemorySegment.copy(frame, off, mem.ram(), ValueLayout.JAVA_BYTE,
                NetBufferLayout.txFrameGpa(p.txBufGpa[buf]) - mem.gpaBase(), len);
        // The buffer no longer holds the prefilled frame (if any): sendPrefilled restores it.
        p.txPrefilled[buf] = false;
        p.post(buf, len, flags, gsoType, hdrLenField, gsoSize, csumStart, csumOffset);
        return true;
    }

    /**
     * Writes {@code frame[off, off+len)} once into the frame area of every TX buffer of {@code qp},
     * so that {@link #sendPrefilled} can post a buffer without copying the frame: the guest's cost
     * per frame is then the virtio-net header and the ring, as for a guest whose frames already sit
     * in its memory (Linux transmits skbs in place). The frame is also kept (copied) here, so a
     * buffer that {@link #send} overwrote in between is restored before it is posted again.
     *
     * <p>Contract: every TX buffer of {@code qp} must be back from the device (the device may
     * still read an in-flight buffer, which must not change under it); call it before sending, or
     * after {@link #flushTx}. {@code len} must not exceed the NIC's {@code maxTxFrame}. Calling it
     * again replaces the prefilled frame. Same thread rule as {@link #send}.
     *
     * @throws IllegalStateException when TX buffers of {@code qp} are still in flight
     */
    public void prefillTx(int qp, byte[] frame, int off, int len) {
        if (len < 0 || len > maxTxFrame) {
            throw new IllegalArgumentException("frame " + len + " > max " + maxTxFrame);
        }
        java.util.Objects.checkFromIndexSize(off, len, frame.length);
        Pair p = pairs[qp];
        p.reclaimTx();
        if (p.txFreeCount != p.txBufs.length) {
            throw new IllegalStateException((p.txBufs.length - p.txFreeCount) + " TX buffers of queue pair " + qp
                    + " still in flight: prefill before sending or after flushTx");
        }
        p.prefilledFrame = java.util.Arrays.copyOfRange(frame, off, off + len);
        for (int b = 0; b < p.txBufGpa.length; b++) {
            p.restorePrefilled(b);
        }
    }

    /**
     * Posts one prefilled TX buffer (see {@link #prefillTx}) carrying the first {@code len} bytes of
     * the prefilled frame, writing only the virtio-net header with the given fields — no frame
     * copy, no allocation. Reclaims finished TX buffers, waits up to {@code timeoutMs} for a free
     * one, exactly as {@link #send}.
     *
     * @return false when no TX buffer became free in time
     * @throws IllegalStateException when {@link #prefillTx} was not called for {@code qp}
     * @throws IllegalArgumentException when {@code len} exceeds the prefilled frame's length
     */
    public boolean sendPrefilled(int qp, int len, int flags, int gsoType, int hdrLenField, int gsoSize, int csumStart,
                                 int csumOffset, int timeoutMs) {
        Pair p = pairs[qp];
        byte[] f = p.prefilledFrame;
        if (f == null) {
            throw new IllegalStateException("queue pair " + qp + ": sendPrefilled without prefillTx");
        }
        if (len < 0 || len > f.length) {
            throw new IllegalArgumentException("len " + len + " > prefilled frame " + f.length);
        }
        int buf = p.takeTxBuffer(timeoutMs);
        if (buf < 0) {
            return false;
        }
        if (!p.txPrefilled[buf]) {
            p.restorePrefilled(buf);
        }
        p.post(buf, len, flags, gsoType, hdrLenField, gsoSize, csumStart, csumOffset);
        return true;
    }

    /** Sends with the header in its own descriptor (legacy layout) instead of inline. */
    public void setTxSeparateHeader(int qp, boolean on) {
        pairs[qp].txSplitHeader = on;
    }

    /** TX buffers the device has not returned yet. */
    public int txInFlight(int qp) {
        Pair p = pairs[qp];
        p.reclaimTx();
        return p.txBufs.length - p.txFreeCount;
    }

    /**
     * Blocks until at most {@code limit} TX buffers of {@code qp} are with the device, reclaiming
     * returned ones and sleeping on the TX call eventfd in between; with EVENT_IDX the device is
     * asked to call only once enough buffers are back ({@link DriverQueue#enableCallbacksAfter}). A guest caps its bytes in flight this way —
     * Linux's TCP small queues keep about 1 MiB per flow below the qdisc — so that its TX buffers
     * stay few and cache-warm instead of cycling through the whole ring. Same thread rule as
     * {@link #send}.
     *
     * @return false when the device did not return enough buffers within {@code timeoutMs}
     */
    public boolean awaitTxInFlightAtMost(int qp, int limit, int timeoutMs) {
        Pair p = pairs[qp];
        p.reclaimTx();
        long end = System.nanoTime() + timeoutMs * 1_000_000L;
        while (p.txBufs.length - p.txFreeCount > limit) {
            long left = (end - System.nanoTime()) / 1_000_000L;
            if (left <= 0) {
                return false;
            }
            // One call once enough buffers are back, not one per buffer (EVENT_IDX).
            int need = p.txBufs.length - p.txFreeCount - limit;
            if (!p.tx.enableCallbacksAfter(need) && Poll.poll(p.txCall, Poll.POLLIN, (int) Math.min(left, 10)) != 0) {
                EventFd.drain(p.txCall);
            }
            p.reclaimTx();
        }
        return true;
    }

    /** Waits until every sent frame was returned by the device (or the timeout). */
    public boolean flushTx(int qp, int timeoutMs) {
        long end = System.nanoTime() + timeoutMs * 1_000_000L;
        while (txInFlight(qp) > 0) {
            if (System.nanoTime() > end) {
                return false;
            }
            Thread.onSpinWait();
            Thread.yield();
        }
        return true;
    }

    // ------------------------------------------------------------------------------------------
    // RX

    /**
     * Receives the next frame on {@code qp}, waiting up to {@code timeoutMs} (0: don't wait) for
     * the device's call. The buffers are re-posted unless {@link #setRxRefill} turned that off.
     *
     * @return the frame or null on timeout
     */
    public Received receive(int qp, int timeoutMs) {
        Pair p = pairs[qp];
        long end = System.nanoTime() + timeoutMs * 1_000_000L;
        while (true) {
            Received r = p.tryReceive();
            if (r != null) {
                return r;
            }
            long left = (end - System.nanoTime()) / 1_000_000L;
            if (left <= 0 && timeoutMs > 0) {
                return null;
            }
            if (timeoutMs == 0) {
                return null;
            }
            if (p.rx.enableCallbacks()) {
                continue;
            }
            if (Poll.poll(p.rxCall, Poll.POLLIN, (int) Math.min(left, 100)) != 0) {
                EventFd.drain(p.rxCall);
            }
        }
    }

    /**
     * A counting sink: takes every frame the device has returned on {@code qp} without copying it
     * out (the contents are discarded), re-posts the buffers in one batch (unless
     * {@link #setRxRefill} turned that off) and returns how many frames that was. When none is
     * pending it blocks like {@link #receive}: re-enables the device's calls (EVENT_IDX: used_event)
     * and sleeps on the call eventfd, up to {@code timeoutMs} (0: don't wait). Allocates nothing.
     * A mergeable frame counts once however many buffers it spans; if the device has not yet
     * returned all of them, the rest are taken (and not counted) by the next call, or skipped by
     * {@link #receive}. Same thread rule as {@link #receive}.
     *
     * @return frames taken, 0 on timeout
     * @throws IllegalStateException when the device returns a buffer shorter than the header
     */
    public int drainRx(int qp, int timeoutMs) {
        Pair p = pairs[qp];
        long end = System.nanoTime() + timeoutMs * 1_000_000L;
        while (true) {
            int n = p.drain();
            if (n > 0 || timeoutMs == 0) {
                return n;
            }
            long left = (end - System.nanoTime()) / 1_000_000L;
            if (left <= 0) {
                return 0;
            }
            if (p.rx.enableCallbacks()) {
                continue; // used entries arrived while arming: no sleep
            }
            if (Poll.poll(p.rxCall, Poll.POLLIN, (int) Math.min(left, 100)) != 0) {
                EventFd.drain(p.rxCall);
            }
        }
    }

    /**
     * Waits for the device's RX call strictly through the call eventfd — unlike {@link #receive} it
     * does not re-check the ring while it waits, so a lost call shows up as a timeout instead of a
     * delay. Enables callbacks first and returns at once when used entries are already pending.
     *
     * @return false when no call came within {@code timeoutMs}
     */
    public boolean awaitRxCall(int qp, int timeoutMs) {
        Pair p = pairs[qp];
        if (p.rx.enableCallbacks()) {
            return true;
        }
        if (Poll.poll(p.rxCall, Poll.POLLIN, timeoutMs) == 0) {
            return false;
        }
        EventFd.drain(p.rxCall);
        return true;
    }

    /** Stops (false) or resumes (true) re-posting RX buffers; resuming refills the ring. */
    public void setRxRefill(int qp, boolean on) {
        Pair p = pairs[qp];
        p.refill = on;
        if (on) {
            p.fillRx();
        }
    }

    /**
     * Takes every RX buffer the device has returned on {@code qp} without reading it (header and
     * contents discarded, continuation buffers included), posts them again and then kicks both
     * rings of the pair whatever the device's kick suppression asks — a front-end nudging its
     * device. Touches the rings only, never a buffer; the kicks are sent even when reading the
     * rings fails (the exception is rethrown after them). Same thread rule as {@link #receive}.
     */
    public void recycleRxAndKick(int qp) {
        Pair p = pairs[qp];
        try {
            long u;
            while ((u = p.rx.pollUsed()) >= 0) {
                p.rxPosted--;
                p.freeRx((int) p.rxBufOfHead[(int) (u >>> 32)]);
            }
            p.rxSkip = 0;
            p.fillRx();
        } finally {
            EventFd.signal(p.rxKick);
            EventFd.signal(p.txKick);
            p.kicks += 2;
        }
    }

    /** RX buffers currently posted to the device. */
    public int rxPosted(int qp) {
        return pairs[qp].rxPosted;
    }

    /**
     * The shared ring state of {@code qp} as the guest sees it (indices, flags, EVENT_IDX fields,
     * unconsumed used entries) and whether a kick or call eventfd is pending — for stall reports.
     * Reads only; does not consume anything. Call from the thread driving the pair.
     */
    public String describe(int qp) {
        Pair p = pairs[qp];
        return "rx " + describe(p.rx, p.rxKick, p.rxCall) + ", posted " + p.rxPosted + "\ntx "
                + describe(p.tx, p.txKick, p.txCall) + ", buffers free " + p.txFreeCount;
    }

    private static String describe(DriverQueue q, int kick, int call) {
        return q.describe()
                + ", kick pending " + (Poll.poll(kick, Poll.POLLIN, 0) != 0)
                + ", call pending " + (Poll.poll(call, Poll.POLLIN, 0) != 0);
    }

    /**
     * Buffers of {@code qp} (RX and TX) the device returned as part of an IN_ORDER batch, without a
     * used entry of their own ({@link DriverQueue#inOrderImplied}).
     */
    public long inOrderImplied(int qp) {
        return pairs[qp].rx.inOrderImplied() + pairs[qp].tx.inOrderImplied();
    }

    public long kicks(int qp) {
        return pairs[qp].kicks;
    }

    @Override
    public void close() {
        for (Pair p : pairs) {
            p.close();
        }
    }

    // ------------------------------------------------------------------------------------------

    private final class Pair {
        final int index;
        final DriverQueue rx;
        final DriverQueue tx;
        final int rxKick = EventFd.create(0, true);
        final int rxCall = EventFd.create(0, true);
        final int txKick = EventFd.create(0, true);
        final int txCall = EventFd.create(0, true);
        final long[] addrs = new long[NetBufferLayout.BIG_DESCRIPTORS];
        final int[] lens = new int[NetBufferLayout.BIG_DESCRIPTORS];
        /** RX buffer gpa by head (the start of the buffer as allocated). */
        final long[] rxBufOfHead;
        final long[] rxBufs;
        final int[] rxFree;
        int rxFreeCount;
        int rxPosted;
        boolean refill = true;
        final long[] txBufGpa;
        final int[] txBufs;
        final int[] txBufOfHead;
        /** Whether TX buffer i holds {@link #prefilledFrame} in its frame area. */
        final boolean[] txPrefilled;
        /** The frame {@link #prefillTx} wrote, or null. */
        byte[] prefilledFrame;
        int txFreeCount;
        boolean txSplitHeader;
        long kicks;

        Pair(int index) {
            this.index = index;
            this.rx = DriverQueue.create(mem, ringSize, features, 0);
            this.tx = DriverQueue.create(mem, ringSize, features, 0);
            int rxSize = switch (rxMode) {
                case MERGEABLE -> NetBufferLayout.rxMergeableBufferSize();
                case BIG -> NetBufferLayout.rxBigBufferSize();
                case SMALL -> NetBufferLayout.rxSmallBufferSize(hdrLen);
            };
            this.rxBufs = new long[ringSize];
            this.rxFree = new int[ringSize];
            this.rxBufOfHead = new long[ringSize];
            for (int i = 0; i < ringSize; i++) {
                rxBufs[i] = mem.alloc(rxSize, 4096);
                rxFree[i] = i;
            }
            rxFreeCount = ringSize;
            int txSize = NetBufferLayout.txBufferSize(maxTxFrame);
            this.txBufGpa = new long[ringSize];
            this.txBufs = new int[ringSize];
            this.txBufOfHead = new int[ringSize];
            this.txPrefilled = new boolean[ringSize];
            for (int i = 0; i < ringSize; i++) {
                txBufGpa[i] = mem.alloc(txSize, 64);
                txBufs[i] = i;
            }
            txFreeCount = ringSize;
        }

        RingSetup ringSetup(DriverQueue q, int kick, int call) {
            return new RingSetup(q.size(), mem.userAddress(q.descGpa()), mem.userAddress(q.driverGpa()),
                    mem.userAddress(q.deviceGpa()), q.base(), features, false, 0, kick, call, -1, true);
        }

        void fillRx() {
            boolean any = false;
            while (rxFreeCount > 0) {
                int b = rxFree[rxFreeCount - 1];
                long gpa = rxBufs[b];
                int n = switch (rxMode) {
                    case MERGEABLE -> NetBufferLayout.rxMergeable(gpa, addrs, lens);
                    case BIG -> NetBufferLayout.rxBig(gpa, hdrLen, addrs, lens);
                    case SMALL -> NetBufferLayout.rxSmall(gpa, hdrLen, addrs, lens);
                };
                int head = rx.add(addrs, lens, 0, n, false);
                if (head < 0) {
                    break;
                }
                rxFreeCount--;
                rxBufOfHead[head] = b;
                rxPosted++;
                any = true;
            }
            if (any) {
                rx.publish();
                if (rx.kickNeeded()) {
                    EventFd.signal(rxKick);
                    kicks++;
                }
            }
        }

        private long dataGpa(int buf, boolean first) {
            long gpa = rxBufs[buf];
            return switch (rxMode) {
                case MERGEABLE -> gpa + NetBufferLayout.NET_SKB_PAD + (first ? hdrLen : 0);
                case BIG -> gpa + NetBufferLayout.PADDED_HDR_LEN;
                case SMALL -> gpa + NetBufferLayout.RX_PAD + hdrLen;
            };
        }

        private long hdrGpa(int buf) {
            long gpa = rxBufs[buf];
            return switch (rxMode) {
                case MERGEABLE -> gpa + NetBufferLayout.NET_SKB_PAD;
                case BIG -> gpa;
                case SMALL -> gpa + NetBufferLayout.RX_PAD;
            };
        }

        /** Continuation buffers of a mergeable frame {@link #drain} counted but has not taken yet. */
        int rxSkip;

        /** Takes (and frees) pending continuation buffers; false when one is not back yet. */
        private boolean skipContinuations() {
            while (rxSkip > 0) {
                long u = rx.pollUsed();
                if (u < 0) {
                    return false;
                }
                rxPosted--;
                freeRx((int) rxBufOfHead[(int) (u >>> 32)]);
                rxSkip--;
            }
            return true;
        }

        int drain() {
            int frames = 0;
            long u;
            while (skipContinuations() && (u = rx.pollUsed()) >= 0) {
                int buf = (int) rxBufOfHead[(int) (u >>> 32)];
                int len = (int) u;
                rxPosted--;
                if (len < hdrLen) {
                    freeRx(buf);
                    throw new IllegalStateException("device returned RX buffer with length " + len + " < header " + hdrLen);
                }
                if (rxMode == RxMode.MERGEABLE && hdrLen == VirtioNetHdr.SIZE) {
                    // Read through the whole-RAM segment at an offset: no slice, nothing allocated.
                    rxSkip = Math.max(1, VirtioNetHdr.numBuffers(mem.ram(), hdrGpa(buf) - mem.gpaBase())) - 1;
                }
                freeRx(buf);
                frames++;
            }
            if (refill && rxFreeCount > 0) {
                fillRx(); // one batch: one publish, at most one kick
            }
            return frames;
        }

        Received tryReceive() {
            if (!skipContinuations()) {
                return null;
            }
            long u = rx.pollUsed();
            if (u < 0) {
                return null;
            }
            int head = (int) (u >>> 32);
            int len = (int) u;
            int buf = (int) rxBufOfHead[head];
            rxPosted--;
            if (len < hdrLen) {
                freeRx(buf);
                throw new IllegalStateException("device returned RX buffer with length " + len + " < header " + hdrLen);
            }
            MemorySegment h = mem.at(hdrGpa(buf), hdrLen);
            int nb = hdrLen == VirtioNetHdr.SIZE ? VirtioNetHdr.numBuffers(h, 0) : 1;
            int flags = VirtioNetHdr.flags(h, 0);
            int gsoType = VirtioNetHdr.gsoType(h, 0);
            int gsoSize = VirtioNetHdr.gsoSize(h, 0);
            int cs = VirtioNetHdr.csumStart(h, 0);
            int co = VirtioNetHdr.csumOffset(h, 0);
            int frameLen = len - hdrLen;
            byte[] out;
            if (rxMode != RxMode.MERGEABLE) {
                out = mem.at(dataGpa(buf, true), frameLen).toArray(ValueLayout.JAVA_BYTE);
                freeRx(buf);
            } else {
                java.io.ByteArrayOutputStream bo = new java.io.ByteArrayOutputStream(frameLen * Math.max(1, nb));
                bo.writeBytes(mem.at(dataGpa(buf, true), frameLen).toArray(ValueLayout.JAVA_BYTE));
                freeRx(buf);
                for (int i = 1; i < nb; i++) {
                    long v;
                    long end = System.nanoTime() + 1_000_000_000L;
                    while ((v = rx.pollUsed()) < 0) {
                        if (System.nanoTime() > end) {
                            throw new IllegalStateException("num_buffers " + nb + " but only " + i + " used buffers");
                        }
                        Thread.onSpinWait();
                    }
                    int b2 = (int) rxBufOfHead[(int) (v >>> 32)];
                    int l2 = (int) v;
                    rxPosted--;
                    bo.writeBytes(mem.at(dataGpa(b2, false), l2).toArray(ValueLayout.JAVA_BYTE));
                    freeRx(b2);
                }
                out = bo.toByteArray();
            }
            if (refill) {
                fillRx();
            }
            return new Received(out, flags, gsoType, gsoSize, cs, co, nb);
        }

        private void freeRx(int buf) {
            rxFree[rxFreeCount++] = buf;
        }

        void reclaimTx() {
            long u;
            while ((u = tx.pollUsed()) >= 0) {
                int head = (int) (u >>> 32);
                txBufs[txFreeCount++] = txBufOfHead[head];
            }
        }

        int takeTxBuffer(int timeoutMs) {
            reclaimTx();
            long end = System.nanoTime() + timeoutMs * 1_000_000L;
            while (txFreeCount == 0 || tx.numFree() < 2) {
                if (System.nanoTime() > end) {
                    return -1;
                }
                if (!tx.enableCallbacks()) {
                    if (Poll.poll(txCall, Poll.POLLIN, 10) != 0) {
                        EventFd.drain(txCall);
                    }
                }
                reclaimTx();
            }
            return txBufs[--txFreeCount];
        }

        /** Copies the prefilled frame into TX buffer {@code buf} (which must be free). */
        void restorePrefilled(int buf) {
            byte[] f = prefilledFrame;
            MemorySegment.copy(f, 0, mem.ram(), ValueLayout.JAVA_BYTE,
                    NetBufferLayout.txFrameGpa(txBufGpa[buf]) - mem.gpaBase(), f.length);
            txPrefilled[buf] = true;
        }

        /**
         * Writes the virtio-net header of free TX buffer {@code buf} (whose frame area already holds
         * {@code len} bytes), adds the chain, publishes it and kicks when the device asks. Writes go
         * through the whole-RAM segment at computed offsets, so nothing is allocated; the ring's
         * publish orders them before the avail index (release).
         */
        void post(int buf, int len, int flags, int gsoType, int hdrLenField, int gsoSize, int csumStart,
                  int csumOffset) {
            long bufGpa = txBufGpa[buf];
            // Legacy layout: the header sits at the buffer start, in its own descriptor; else inline
            // just before the frame.
            long hdrOff = (txSplitHeader ? bufGpa : NetBufferLayout.txInlineHeaderGpa(bufGpa, hdrLen)) - mem.gpaBase();
            MemorySegment r = mem.ram();
            VirtioNetHdr.flags(r, hdrOff, flags);
            VirtioNetHdr.gsoType(r, hdrOff, gsoType);
            VirtioNetHdr.hdrLen(r, hdrOff, hdrLenField);
            VirtioNetHdr.gsoSize(r, hdrOff, gsoSize);
            VirtioNetHdr.csumStart(r, hdrOff, csumStart);
            VirtioNetHdr.csumOffset(r, hdrOff, csumOffset);
            if (hdrLen == VirtioNetHdr.SIZE) {
                VirtioNetHdr.numBuffers(r, hdrOff, 0); // every field written: no clear (slice) needed
            }
            int n = txSplitHeader
                    ? NetBufferLayout.txSeparateHeader(bufGpa, len, hdrLen, addrs, lens)
                    : NetBufferLayout.txInline(bufGpa, len, hdrLen, addrs, lens);
            int head = tx.add(addrs, lens, n, 0, false);
            txBufOfHead[head] = buf;
            tx.publish();
            if (tx.kickNeeded()) {
                EventFd.signal(txKick);
                kicks++;
            }
        }

        void close() {
            Fds.closeQuietly(rxKick);
            Fds.closeQuietly(rxCall);
            Fds.closeQuietly(txKick);
            Fds.closeQuietly(txCall);
        }
    }
}
