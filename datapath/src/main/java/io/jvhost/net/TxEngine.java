package io.jvhost.net;

import io.jvhost.engine.Counter;
import io.jvhost.engine.QueueCounters;
import io.jvhost.engine.QueueLatency;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.SplitVirtqueue;

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
 * <p>Threading: owned by one queue-pair worker; no allocation and no locks in {@link #process}.
 */
public final class TxEngine {
    private static final System.Logger LOG = System.getLogger(TxEngine.class.getName());

    private final int queuePair;
    private final SplitVirtqueue queue;
    private final Chain chain;
    private final QueueCounters counters;
    private final QueueLatency latency;
    private final MemorySegment hdr;

    private int tapFd = -1;
    private int hdrSize = VirtioNetHdr.SIZE;
    private TxValidator validator;
    private PacketCapture capture;
    private int callFd = -1;
    private boolean enabled = true;
    /** A chain taken from the ring whose write returned EAGAIN: written first on the next call. */
    private boolean pending;
    private boolean backpressured;
    private boolean notifyEnabled = true;
    private boolean tapErrorLogged;

    public TxEngine(int queuePair, SplitVirtqueue queue, Arena arena, QueueCounters counters, QueueLatency latency) {
        this.queuePair = queuePair;
        this.queue = queue;
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
    }

    public void setCapture(PacketCapture capture) {
        this.capture = capture;
    }

    public void setCallFd(int fd) {
        this.callFd = fd;
    }

    public void setEnabled(boolean on) {
        this.enabled = on;
    }

    public boolean backpressured() {
        return backpressured;
    }

    /** The tap signalled EPOLLOUT: the next {@link #process} retries the held chain. */
    public void writable() {
        backpressured = false;
    }

    /**
     * Gives a held chain back to the ring (rewinds the avail index) so that a stop reports a base
     * that replays it, and a memory-table swap does not leave iovecs into the old table.
     */
    public void releasePending() {
        if (pending) {
            queue.rewind(1);
            pending = false;
        }
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
        if (notifyEnabled) {
            queue.disableNotification();
            notifyEnabled = false;
        }
        int done = 0;
        long bytes = 0;
        while (done < budget) {
            if (!pending) {
                int r = queue.next(chain);
                if (r != SplitVirtqueue.CHAIN) {
                    break; // NONE, or BROKEN (the queue signalled its error fd itself)
                }
                if (!enabled) {
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
                w = Fds.writev(tapFd, chain.readable(), chain.readableCount());
            } catch (NativeException e) {
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
        if (done > 0) {
            counters.add(Counter.TX_BYTES, bytes);
            counters.increment(Counter.TX_BATCHES);
            queue.publishUsed();
            latency.recordService(System.nanoTime() - cycleStart);
            latency.recordBatch(done);
            signal();
        }
        return done;
    }

    private DropReason check() {
        if (chain.writableCount() != 0 || chain.readableBytes() < hdrSize) {
            return DropReason.TX_BAD_CHAIN;
        }
        NativeMemory.gather(chain.readable(), chain.readableCount(), 0, hdr, 0, hdrSize);
        return validator.check(hdr, 0, chain.readableBytes() - hdrSize);
    }

    private void signal() {
        if (queue.needsCall()) {
            if (callFd >= 0) {
                EventFd.signal(callFd);
                counters.increment(Counter.TX_CALLS);
            }
        } else {
            counters.increment(Counter.CALLS_SUPPRESSED);
        }
    }

    /**
     * Before the worker sleeps: asks the guest to kick and re-checks the ring.
     *
     * @return true when chains arrived meanwhile (process them instead of sleeping)
     */
    public boolean armNotify() {
        notifyEnabled = true;
        return !pending && queue.enableNotification();
    }

    private void logTapError(NativeException e) {
        if (!tapErrorLogged) {
            tapErrorLogged = true;
            LOG.log(System.Logger.Level.WARNING, "q{0} TX: tap refused a frame ({1}); further errors only counted",
                    queuePair, e.getMessage());
        }
    }
}
