package io.jvhost.driver.net;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.NetBufferLayout;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Poll;
import io.jvhost.net.VirtioNetFeatures;
import io.jvhost.net.VirtioNetHdr;
import io.jvhost.vhostuser.DeviceBackend;
import io.jvhost.vhostuser.RingConfig;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The Java "guest" virtio-net NIC: RX/TX split rings per queue pair in {@link DriverMemory}, buffers
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
     * @param features   the features the guest acknowledges (must be offered by the device)
     * @param ringSize   descriptors per ring
     * @param maxTxFrame largest frame the guest will send (65550 for TSO)
     */
    public GuestNic(DriverMemory mem, int queuePairs, long features, int ringSize, int maxTxFrame) {
        this.mem = mem;
        this.features = features;
        this.hdrLen = VirtioNetHdr.size(features);
        this.ringSize = ringSize;
        this.maxTxFrame = maxTxFrame;
        boolean mrg = VirtioNetFeatures.has(features, VirtioNetFeatures.MRG_RXBUF);
        this.rxMode = mrg ? RxMode.MERGEABLE : VirtioNetFeatures.guestGso(features) ? RxMode.BIG : RxMode.SMALL;
        this.pairs = new Pair[queuePairs];
        for (int i = 0; i < queuePairs; i++) {
            pairs[i] = new Pair(i);
        }
    }

    /** Bytes of guest RAM a NIC with these parameters needs (rings, buffers), with slack. */
    public static long ramNeeded(int queuePairs, int ringSize, int maxTxFrame, long features) {
        long rx = VirtioNetFeatures.has(features, VirtioNetFeatures.MRG_RXBUF) ? NetBufferLayout.rxMergeableBufferSize()
                : VirtioNetFeatures.guestGso(features) ? NetBufferLayout.rxBigBufferSize()
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
        device.onFeaturesSet(features);
        device.onMemoryTable(table);
        for (Pair p : pairs) {
            p.fillRx();
            device.startRing(p.ringConfig(2 * p.index, p.rx, p.rxKick, p.rxCall, table));
            device.startRing(p.ringConfig(2 * p.index + 1, p.tx, p.txKick, p.txCall, table));
        }
    }

    /**
     * Drives a back-end over vhost-user the way QEMU does: feature and protocol negotiation, the
     * memory table (the RAM must be memfd-backed, see {@link DriverMemory#memfd}), then NUM, BASE,
     * ADDR, KICK, CALL and ENABLE for every ring, RX posted full of buffers first.
     *
     * @return the acknowledged features
     * @throws IllegalStateException when the back-end does not offer every feature this NIC uses
     */
    public long attachVhostUser(VhostUserClient client, long wantProtocol) {
        long ack = client.negotiate(features, wantProtocol);
        long missing = features & ~ack;
        if (missing != 0) {
            throw new IllegalStateException("back-end does not offer features 0x" + Long.toHexString(missing));
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
        long bufGpa = p.txBufGpa[buf];
        long hdrGpa = NetBufferLayout.txInlineHeaderGpa(bufGpa, hdrLen);
        MemorySegment h = mem.at(hdrGpa, hdrLen);
        VirtioNetHdr.clear(h, 0, hdrLen);
        VirtioNetHdr.flags(h, 0, flags);
        VirtioNetHdr.gsoType(h, 0, gsoType);
        VirtioNetHdr.hdrLen(h, 0, hdrLenField);
        VirtioNetHdr.gsoSize(h, 0, gsoSize);
        VirtioNetHdr.csumStart(h, 0, csumStart);
        VirtioNetHdr.csumOffset(h, 0, csumOffset);
        MemorySegment.copy(frame, off, mem.at(NetBufferLayout.txFrameGpa(bufGpa), len), ValueLayout.JAVA_BYTE, 0, len);
        int n = p.txSplitHeader
                ? NetBufferLayout.txSeparateHeader(bufGpa, len, hdrLen, p.addrs, p.lens)
                : NetBufferLayout.txInline(bufGpa, len, hdrLen, p.addrs, p.lens);
        if (p.txSplitHeader) {
            // Legacy layout: the header sits at the buffer start, in its own descriptor.
            MemorySegment.copy(h, 0, mem.at(bufGpa, hdrLen), 0, hdrLen);
        }
        int head = p.tx.add(p.addrs, p.lens, n, 0, false);
        p.txBufOfHead[head] = buf;
        p.tx.publish();
        if (p.tx.kickNeeded()) {
            EventFd.signal(p.txKick);
            p.kicks++;
        }
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

    private static String describe(DriverVirtqueue q, int kick, int call) {
        int size = q.size();
        return "avail{idx " + io.jvhost.virtq.VringAvail.idxAcquire(q.availRing())
                + ", flags " + io.jvhost.virtq.VringAvail.flags(q.availRing())
                + ", used_event " + io.jvhost.virtq.VringAvail.usedEvent(q.availRing(), size)
                + "} used{idx " + io.jvhost.virtq.VringUsed.idxAcquire(q.usedRing())
                + ", flags " + io.jvhost.virtq.VringUsed.flags(q.usedRing())
                + ", avail_event " + io.jvhost.virtq.VringUsed.availEvent(q.usedRing(), size)
                + "} unconsumed used " + q.usedPending() + ", free descriptors " + q.numFree()
                + ", kick pending " + (Poll.poll(kick, Poll.POLLIN, 0) != 0)
                + ", call pending " + (Poll.poll(call, Poll.POLLIN, 0) != 0);
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
        final DriverVirtqueue rx;
        final DriverVirtqueue tx;
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
        int txFreeCount;
        boolean txSplitHeader;
        long kicks;

        Pair(int index) {
            this.index = index;
            this.rx = new DriverVirtqueue(mem, ringSize, features, 0, 0);
            this.tx = new DriverVirtqueue(mem, ringSize, features, 0, 0);
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
            for (int i = 0; i < ringSize; i++) {
                txBufGpa[i] = mem.alloc(txSize, 64);
                txBufs[i] = i;
            }
            txFreeCount = ringSize;
        }

        RingConfig ringConfig(int qi, DriverVirtqueue q, int kick, int call, GuestMemory table) {
            return new RingConfig(qi, q.size(), mem.userAddress(q.descGpa()), mem.userAddress(q.availGpa()),
                    mem.userAddress(q.usedGpa()), 0, 0, 0, kick, call, -1, true, features, table);
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

        Received tryReceive() {
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

        void close() {
            Fds.closeQuietly(rxKick);
            Fds.closeQuietly(rxCall);
            Fds.closeQuietly(txKick);
            Fds.closeQuietly(txCall);
        }
    }
}
