package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.jfr.JvhostEvents;
import io.jvhost.config.Configuration;
import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Errno;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Tun;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.DeviceQueue;
import io.jvhost.virtq.Vring;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Guest → tap: each available TX chain becomes one {@code writev} whose iovecs are the chain's
 * readable iovecs, unchanged — they point into guest memory, so the frame is never copied. The
 * tap takes the virtio-net header from the first {@code hdrSize} bytes of the data whatever the
 * iovec split (header inline, in its own descriptor, or scattered).
 *
 * <p>Before writing, the header (gathered into a 12-byte scratch, the only copy) and the length are
 * checked by {@link TxValidator}; a malformed frame is dropped with a counted reason and its chain
 * returned with used length 0. {@code EAGAIN} from the tap is backpressure: the chain is kept
 * (not returned, not dropped), {@link #backpressured()} becomes true and the worker waits for
 * EPOLLOUT on the tap before calling {@link #process} again; no frame the kernel would take is lost.
 *
 * <h2>io_uring mode ({@link #useRing})</h2>
 * The batch's chains are prepared as linked {@code IORING_OP_WRITEV}s (RWF_NOWAIT, iovecs copied
 * into a per-slot area so they outlive the chain object) and submitted with one
 * {@code io_uring_enter}; the tap completes them inline, so the completions are there when the
 * enter returns and nothing stays in flight between calls. When the tap has a send-buffer cap
 * (the only set-up where it returns EAGAIN) the SQEs are linked, which keeps the frames in order:
 * the first frame that fails stops the rest (-ECANCELED), which are given back to the ring
 * ({@link DeviceQueue#rewind}) and taken again — after EPOLLOUT for EAGAIN, at once after a
 * frame-level error (that frame dropped and counted, as in syscall mode). Without a cap they are
 * not linked (links cost ≈ 15 %): each failed frame is dropped and counted, an EAGAIN there also
 * makes the worker wait for EPOLLOUT.
 *
 * <p>Threading: owned by one queue-pair worker; no allocation and no locks in {@link #process}.
 */
public final class TxEngine {
    private static final System.Logger LOG = System.getLogger(TxEngine.class.getName());

    private final int queuePair;
    private final Vring ring;
    /** {@link Vring#queue()}, refreshed at every entry point (a start may switch the ring format). */
    private DeviceQueue queue;
    private final Chain chain;
    private final QueueCounters counters;
    private final QueueLatency latency;
    private final MemorySegment hdr;

    private int tapFd = -1;
    private int hdrSize = VirtioNetHdr.SIZE;
    private TxValidator validator;
    private PacketCapture capture;
    /** A chain taken from the ring whose write returned EAGAIN: written first on the next call. */
    private boolean pending;
    private boolean backpressured;
    private boolean notifyEnabled = true;
    private boolean tapErrorLogged;

    /** Largest batch submitted with one enter, and iovecs per batch slot (longer chains: writev). */
    static final int RING_BATCH = 64;
    static final int SLOT_IOVS = 32;
    /**
     * Whether batch SQEs are linked: only when the tap has a send-buffer cap, the one set-up where
     * a tap write returns EAGAIN (see "When does a tap write return EAGAIN?" in DATAPATH.md). Links
     * keep the order after an EAGAIN but cost ≈ 15 % (each follower is issued from task-work).
     */
    private boolean ringLink = true;
    private static final boolean RING_FIXED = !Configuration.TAP_URING_NO_FIXED.get();
    private static final boolean RING_PLAIN = !Configuration.TAP_URING_NO_PLAIN_WRITE.get();
    private int ringFd = -1;
    private int ringFdFlags;
    private IoUring uring;
    private MemorySegment slotIovs;
    private MemorySegment[] slots;
    private final int[] bHeads = new int[RING_BATCH];
    private final long[] bLens = new long[RING_BATCH];
    private final int[] bCnt = new int[RING_BATCH];
    private final int[] bRes = new int[RING_BATCH];
    private int bCount;
    private long bBytes;
    private int bBatch = RING_BATCH;
    /** Frame bytes in the batch being prepared. */
    private long bQueuedBytes;
    /**
     * A batch is submitted and its buffers published as soon as it holds this many frame bytes
     * (four 64 KiB GSO frames; small frames reach {@link #RING_BATCH} first).
     */
    static final long PUBLISH_BYTES = Configuration.TX_PUBLISH_BYTES.get();

    /**
     * @param ring the TX ring this engine serves (owned by the same worker)
     */
    public TxEngine(int queuePair, Vring ring, Arena arena, QueueCounters counters, QueueLatency latency) {
        this.queuePair = queuePair;
        this.ring = ring;
        this.queue = ring.queue();
        this.chain = new Chain(arena, 512);
        this.counters = counters;
        this.latency = latency;
        this.hdr = arena.allocate(VirtioNetHdr.SIZE, 8);
    }

    /** Sets the tap fd, header size and validator (features changed). Worker thread, ring idle or not. */
    public void configure(int tapFd, int hdrSize, TxValidator validator) {
        this.tapFd = tapFd;
        this.hdrSize = hdrSize;
        this.validator = validator;
        bindRingFile();
    }

    /**
     * Sends through {@code ring} (batched WRITEVs, see the class comment) from now on, or with one
     * {@code writev} per frame when null. The ring belongs to this engine's worker; the engine
     * does not close it. Worker thread, between {@link #process} calls.
     */
    public void useRing(IoUring ring, Arena arena) {
        this.uring = ring;
        if (ring != null && slots == null) {
            slotIovs = arena.allocate((long) RING_BATCH * SLOT_IOVS * NativeMemory.IOVEC_SIZE, 8);
            slots = new MemorySegment[RING_BATCH];
            for (int i = 0; i < RING_BATCH; i++) {
                slots[i] = slotIovs.asSlice((long) i * SLOT_IOVS * NativeMemory.IOVEC_SIZE,
                        (long) SLOT_IOVS * NativeMemory.IOVEC_SIZE);
            }
        }
        if (ring != null) {
            bBatch = Math.min(RING_BATCH, uring.sqEntries());
        }
        bindRingFile();
    }

    /** The tap fd as the ring's fixed file 0 (no file lookup per SQE), or the plain fd. */
    private void bindRingFile() {
        if (uring == null) {
            return;
        }
        ringLink = true;
        if (tapFd >= 0) {
            try {
                ringLink = Tun.sndBuf(tapFd) != Integer.MAX_VALUE;
            } catch (NativeException e) {
                ringLink = true; // not a tap (tests): keep the safe mode
            }
        }
        if (RING_FIXED && tapFd >= 0) {
            uring.registerFile(tapFd);
            ringFd = 0;
            ringFdFlags = IoUring.SQE_FIXED_FILE;
        } else {
            ringFd = tapFd;
            ringFdFlags = 0;
        }
    }

    public void setCapture(PacketCapture capture) {
        this.capture = capture;
    }

    public boolean backpressured() {
        return backpressured;
    }

    /** The tap signalled EPOLLOUT: the next {@link #process} retries the held chain. */
    public void writable() {
        backpressured = false;
    }

    /**
     * Gives a held chain (and a batch abandoned half-built) back to the ring so that a stop reports
     * a base that replays it, and a memory-table swap does not leave iovecs into the old table.
     */
    public void releasePending() {
        queue = ring.queue();
        if (bCount > 0) {
            // A batch abandoned half-built (an exception in the cycle, e.g. a guest-memory fault):
            // its SQEs must never go out with a later batch (they point into this table's iovecs).
            uring.discardPrepared();
            bCount = 0;
            bQueuedBytes = 0;
        }
        pending = false;
        queue.returnInFlight();
        backpressured = false;
    }

    /**
     * Sends up to {@code budget} frames, then publishes the used entries and calls the guest if it
     * wants a call.
     *
     * @param cycleStart nanoTime when the worker cycle began (for the service-time histogram)
     * @return chains completed (sent or dropped)
     */
    public int process(int budget, long cycleStart) {
        queue = ring.queue();
        if (notifyEnabled) {
            queue.disableNotification();
            notifyEnabled = false;
        }
        if (uring != null) {
            return processRing(budget, cycleStart);
        }
        int done = 0;
        long bytes = 0;
        while (done < budget) {
            if (!pending) {
                int r = queue.next(chain);
                if (r != DeviceQueue.CHAIN) {
                    break; // NONE, or BROKEN (the queue signalled its error fd itself)
                }
                if (!ring.enabled()) {
                    counters.drop(DropReason.TX_RING_DISABLED);
                    queue.addUsed(chain.head(), 0);
                    done++;
                    continue;
                }
                DropReason bad = check();
                if (bad != null) {
                    counters.drop(bad);
                    queue.addUsed(chain.head(), 0);
                    done++;
                    continue;
                }
            }
            long w;
            try {
                w = Fds.writevNonBlocking(tapFd, chain.readable().address(), chain.readableCount());
            } catch (NativeException e) {
                checkFault(e.errno());
                // EINVAL (GSO fields the kernel refuses), EIO (tap down), ...: this frame only.
                pending = false;
                logTapError(e);
                counters.drop(DropReason.TX_TAP_ERROR);
                queue.addUsed(chain.head(), 0);
                done++;
                continue;
            }
            if (w == Fds.WOULD_BLOCK) {
                pending = true;
                backpressured = true;
                counters.increment(Counter.TX_BACKPRESSURE);
                break;
            }
            pending = false;
            long frameLen = chain.readableBytes() - hdrSize;
            PacketCapture c = capture;
            if (c != null && !c.captureIovecs(queuePair, FrameMeta.DIR_TX, chain.readable(), chain.readableCount(),
                    hdrSize, frameLen)) {
                counters.drop(DropReason.CAPTURE_NO_BUFFER);
            }
            bytes += frameLen;
            counters.increment(Counter.TX_FRAMES);
            queue.addUsed(chain.head(), 0);
            done++;
        }
        finish(done, bytes, cycleStart);
        return done;
    }

    private void finish(int done, long bytes, long cycleStart) {
        if (done > 0) {
            counters.add(Counter.TX_BYTES, bytes);
            counters.increment(Counter.TX_BATCHES);
            queue.publishUsed();
            latency.recordBatch(JvhostEvents.TX, System.nanoTime() - cycleStart, done);
            signal();
        }
    }

    /** {@link #process} in io_uring mode. */
    private int processRing(int budget, long cycleStart) {
        int done = 0;
        bBytes = 0;
        while (done + bCount < budget) {
            int r = queue.next(chain);
            if (r != DeviceQueue.CHAIN) {
                break;
            }
            DropReason bad = ring.enabled() ? check() : DropReason.TX_RING_DISABLED;
            int cnt = chain.readableCount();
            if (bCount > 0 && (bad != null || cnt > SLOT_IOVS || bCount == bBatch)) {
                // Send what is batched first (so a rewind after a failure covers only batched chains),
                // then take this chain again.
                queue.rewind(1);
                done += flushRing();
                if (backpressured) {
                    break;
                }
                continue;
            }
            if (bad != null) {
                counters.drop(bad);
                queue.addUsed(chain.head(), 0);
                done++;
                continue;
            }
            if (cnt > SLOT_IOVS) {
                done += writeOne();
                if (backpressured) {
                    break;
                }
                continue;
            }
            int k = bCount;
            if (cnt == 1) {
                // two stores instead of a bulk copy (the common layout: header inline, one buffer)
                NativeMemory.iovSet(slots[k], 0, chain.readableBase(0), chain.readableLen(0));
            } else {
                MemorySegment.copy(chain.readable(), 0, slots[k], 0, (long) cnt * NativeMemory.IOVEC_SIZE);
            }
            bHeads[k] = chain.head();
            bLens[k] = chain.readableBytes() - hdrSize;
            bCnt[k] = cnt;
            int sqeFlags = ringFdFlags | (ringLink ? IoUring.SQE_IO_LINK : 0);
            if (cnt == 1 && RING_PLAIN) {
                // One buffer (header inline, the common layout): WRITE skips the kernel's iovec import.
                uring.prepare(IoUring.OP_WRITE, ringFd, chain.readableBase(0), (int) chain.readableLen(0), sqeFlags,
                        IoUring.RWF_NOWAIT, k);
            } else {
                uring.prepare(IoUring.OP_WRITEV, ringFd, slots[k].address(), cnt, sqeFlags, IoUring.RWF_NOWAIT, k);
            }
            bCount++;
            bQueuedBytes += bLens[k];
            if (bQueuedBytes >= PUBLISH_BYTES) {
                // Big frames (GSO): hand buffers back every PUBLISH_BYTES instead of once per batch, so
                // the guest refills while the rest of the batch is written (as vhost-net does).
                done += flushRing();
                if (backpressured) {
                    break;
                }
                queue.publishUsed();
                signal();
            }
        }
        if (bCount > 0) {
            done += flushRing();
        }
        finish(done, bBytes, cycleStart);
        return done;
    }

    /** A chain too long for a batch slot: one plain writev (the syscall mode's path, no holding). */
    private int writeOne() {
        long w;
        try {
            w = Fds.writevNonBlocking(tapFd, chain.readable().address(), chain.readableCount());
        } catch (NativeException e) {
            checkFault(e.errno());
            logTapError(e);
            counters.drop(DropReason.TX_TAP_ERROR);
            queue.addUsed(chain.head(), 0);
            return 1;
        }
        if (w == Fds.WOULD_BLOCK) {
            queue.rewind(1);
            backpressured = true;
            counters.increment(Counter.TX_BACKPRESSURE);
            return 0;
        }
        long frameLen = chain.readableBytes() - hdrSize;
        PacketCapture c = capture;
        if (c != null && !c.captureIovecs(queuePair, FrameMeta.DIR_TX, chain.readable(), chain.readableCount(),
                hdrSize, frameLen)) {
            counters.drop(DropReason.CAPTURE_NO_BUFFER);
        }
        bBytes += frameLen;
        counters.increment(Counter.TX_FRAMES);
        queue.addUsed(chain.head(), 0);
        return 1;
    }

    /**
     * Submits the batch with one enter, waits for its completions (the tap completes NOWAIT writes
     * inline, so normally none is left after the enter) and completes the chains in order.
     *
     * @return chains completed (sent or dropped); the rest of the batch is rewound
     */
    private int flushRing() {
        int n = bCount;
        bCount = 0;
        bQueuedBytes = 0;
        if (ringLink) {
            uring.unlinkLast();
        }
        uring.submitAndReap(n, bRes);
        PacketCapture c = capture;
        for (int k = 0; k < n; k++) {
            int res = bRes[k];
            if (res >= 0) {
                if (c != null && !c.captureIovecs(queuePair, FrameMeta.DIR_TX, slots[k], bCnt[k], hdrSize, bLens[k])) {
                    counters.drop(DropReason.CAPTURE_NO_BUFFER);
                }
                bBytes += bLens[k];
                counters.increment(Counter.TX_FRAMES);
                queue.addUsed(bHeads[k], 0);
                continue;
            }
            if (!ringLink && res == -Errno.EAGAIN) {
                // Unlinked (no sndbuf cap, EAGAIN all but impossible): later frames may already be
                // out, so this one cannot be retried in order — dropped like a full qdisc would.
                backpressured = true;
                counters.increment(Counter.TX_BACKPRESSURE);
                counters.drop(DropReason.TX_TAP_ERROR);
                queue.addUsed(bHeads[k], 0);
                continue;
            }
            if (res == -Errno.EAGAIN || res == -Errno.ECANCELED) {
                // Not sent: this one and all after it go back to the ring, in order.
                if (res == -Errno.EAGAIN) {
                    backpressured = true;
                    counters.increment(Counter.TX_BACKPRESSURE);
                }
                queue.rewind(n - k);
                return k;
            }
            // EINVAL, EIO, ...: this frame only (as in syscall mode).
            checkFault(-res);
            logTapError(-res);
            counters.drop(DropReason.TX_TAP_ERROR);
            queue.addUsed(bHeads[k], 0);
        }
        return n;
    }

    /**
     * EFAULT from a write whose iovecs were validated against the mapped table: the pages vanished
     * under the mapping (a front-end shrank its file). Not a tap error: the worker stops the pair.
     */
    private void checkFault(int errno) {
        if (errno == Errno.EFAULT) {
            throw new MemoryFault("q" + queuePair + " TX: writev from guest buffers: EFAULT");
        }
    }

    private DropReason check() {
        if (chain.writableCount() != 0 || chain.readableBytes() < hdrSize) {
            return DropReason.TX_BAD_CHAIN;
        }
        if (chain.readableLen(0) >= hdrSize) {
            // header inline in the first buffer (the usual layout): read it where it is, no gather.
            // The guest may change it after this check either way; the kernel validates what it reads.
            return validator.check(NativeMemory.ALL, chain.readableBase(0), chain.readableBytes() - hdrSize);
        }
        NativeMemory.gather(chain.readable(), chain.readableCount(), 0, hdr, 0, hdrSize);
        return validator.check(hdr, 0, chain.readableBytes() - hdrSize);
    }

    private void signal() {
        int r = ring.notifyUsed();
        if (r == Vring.CALLED) {
            counters.increment(Counter.TX_CALLS);
        } else if (r == Vring.SUPPRESSED) {
            counters.increment(Counter.CALLS_SUPPRESSED);
        }
    }

    /**
     * Before the worker sleeps: asks the guest to kick and re-checks the ring.
     *
     * @return true when chains arrived meanwhile (process them instead of sleeping)
     */
    public boolean armNotify() {
        queue = ring.queue();
        notifyEnabled = true;
        return !pending && queue.enableNotification();
    }

    private void logTapError(NativeException e) {
        JvhostEvents.tapError(latency.device(), queuePair, JvhostEvents.TX, e.getMessage());
        if (!tapErrorLogged) {
            tapErrorLogged = true;
            LOG.log(System.Logger.Level.WARNING, "q{0} TX: tap refused a frame ({1}); frame dropped, further errors"
                    + " only counted (tx_tap_error in jvhost stats): check that the tap is up and its MTU/offloads"
                    + " match the guest (ip -d link show)", queuePair, e.getMessage());
        }
    }

    private void logTapError(int errno) {
        JvhostEvents.tapError(latency.device(), queuePair, JvhostEvents.TX, "io_uring writev: " + Errno.name(Math.abs(errno)));
        if (!tapErrorLogged) {
            tapErrorLogged = true;
            LOG.log(System.Logger.Level.WARNING, "q{0} TX: tap refused a frame (io_uring writev: errno {1}); frame"
                    + " dropped, further errors only counted (tx_tap_error in jvhost stats): check that the tap is up"
                    + " and its MTU/offloads match the guest (ip -d link show)", queuePair, errno);
        }
    }
}
