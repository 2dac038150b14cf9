package io.jvhost.net;

import io.jvhost.stats.DropReason;
import io.jvhost.stats.Counter;
import io.jvhost.stats.QueueCounters;
import io.jvhost.stats.QueueLatency;
import io.jvhost.jfr.JvhostEvents;
import io.jvhost.config.Configuration;
import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryFault;
import io.jvhost.nativ.Errno;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.IoUring;
import io.jvhost.nativ.NativeException;
import io.jvhost.virtq.Chain;
import io.jvhost.virtq.DeviceQueue;
import io.jvhost.virtq.Vring;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Tap → guest: {@code readv} straight into the guest's RX buffers.
 *
 * <h2>Buffer window</h2>
 * The engine keeps a window of chains taken from the RX ring but not yet used, with their
 * writable iovecs laid end to end in one native iovec array. Before each read it tops the window up
 * to the largest frame the guest may receive ({@link VirtioNetHdr#MAX_GSO_BUFFER} with guest GSO,
 * else MTU + Ethernet + VLAN + header) — with MRG_RXBUF across as many chains as that takes, without
 * it one chain per frame (the guest's big or small buffers). One {@code readv} then fills as many
 * chains as the frame needs; those are published (with {@code num_buffers} written into the
 * header), the rest stay in the window for the next frame. Chains left in the window are given
 * back ({@link DeviceQueue#returnInFlight}) only when the ring stops, the features change or the
 * memory table is swapped.
 *
 * <h2>Never truncated</h2>
 * The tap cannot be peeked, so every read carries one extra iovec after the guest's buffers: an
 * overflow area as large as any frame. A frame longer than the guest buffers lands partly there;
 * it is dropped and counted ({@link DropReason#RX_TOO_BIG}) and the guest buffers stay in the window
 * — never delivered cut short. Exception: with MRG_RXBUF, a window short of the largest frame only
 * because the ring ran dry (a full non-GSO frame fits, so the engine reads rather than waiting for
 * 64 KiB of buffers the guest may never post at once): a GSO frame that spills is held, and its tail
 * is copied from the overflow area into the chains the guest posts next before it is delivered.
 *
 * <h2>One buffer per frame: plain reads, batched through io_uring</h2>
 * Where the guest's chains are single buffers larger than the largest frame it can be handed
 * ({@link #need}: no guest GSO and buffers of at least MTU + headers, as DPDK's virtio PMD and
 * the Java driver post them, or Linux with its GRO offloads off), a frame always fits the first
 * chain and needs no overflow area: the engine {@code read}s into that one buffer (no iovec array
 * for the kernel to import), and with a ring ({@link #useRing}; the worker gives it one only with
 * {@link Configuration#RX_URING_BATCH}) it submits one
 * {@code IORING_OP_READ} (RWF_NOWAIT, fixed file) per such chain, up to {@value #RING_BATCH} at a
 * time, with one {@code io_uring_enter} — measured ≈ 10 % less CPU per frame than one
 * {@code readv} each (bench {@code RxDrain}). The tap cuts a frame longer than the buffer and
 * returns the buffer's length, so a read that fills its buffer exactly is taken as cut: dropped
 * ({@link DropReason#RX_TOO_BIG}; only a frame longer than {@link #need} can do that), the
 * buffer stays in the window.
 *
 * <h2>No buffers</h2>
 * When the ring has no chains (or, with MRG_RXBUF, less than a full non-GSO frame, or not enough
 * to finish a held frame), {@link #needsBuffers()} turns true: the worker stops polling the tap for input (the kernel's tap
 * queue is the backlog), calls {@link #armNotify()} — which enables the guest's kick and re-checks
 * the ring (no lost wake-up) — and sleeps until the kick.
 *
 * <h2>Dirty logging</h2>
 * While the device is being migrated ({@link Vring#dirtyLog()} non-null) every byte the engine
 * (or the kernel, through its reads) writes into a guest buffer marks its page: a delivered frame
 * once its {@code num_buffers} is written and before the used entries are published, a frame
 * dropped or held after its read. The iovecs hold host addresses; each piece lies in one region
 * and is translated back to guest-physical ({@link DirtyLog#markHost}). Not logging costs one
 * null check per frame on a field read once per batch.
 *
 * <p>Threading: owned by one queue-pair worker; {@link #process} allocates nothing, takes no lock.
 */
public final class RxEngine {
    private static final System.Logger LOG = System.getLogger(RxEngine.class.getName());
    /** readv takes at most UIO_MAXIOV entries; one is the overflow area. */
    private static final int MAX_IOV = Chain.UIO_MAXIOV - 1;
    private static final int CHAIN_IOV = 512;
    /** Most single-buffer reads submitted with one io_uring_enter. */
    public static final int RING_BATCH = 32;
    /**
     * Whether a worker in io_uring mode gives its RX engine a ring ({@link #useRing};
     * {@link Configuration#RX_URING_BATCH}, default false): end to end its gain was inside the noise
     * (bench/RESULTS-perf.md §6). The single {@code read}s stay on.
     */
    public static final boolean BATCH = Configuration.RX_URING_BATCH.get();

    private final int queuePair;
    private final Vring ring;
    /** {@link Vring#queue()}, refreshed at every entry point (a start may switch the ring format). */
    private DeviceQueue queue;
    /** {@link Vring#dirtyLog()}, refreshed at every batch; null when not logging. */
    private DirtyLog log;
    private final Chain chain;
    private final QueueCounters counters;
    private final QueueLatency latency;
    /** Window iovecs plus one overflow entry. */
    private final MemorySegment iovs;
    private final MemorySegment overflow;
    private final MemorySegment numBuffers;
    private final int[] heads;
    private final int[] lens;
    private final int[] iovCounts;

    private int windowChains;
    private int windowIov;
    private long windowBytes;
    /** The window cannot take more chains (ring size, chain or iovec limit reached). */
    private boolean windowFull;
    /**
     * IN_ORDER: an unusable chain was returned behind the window's chains. Its used entry comes
     * after theirs in ring order, so a frame must not continue into chains taken after it (the
     * guest would count the empty entry among the frame's num_buffers): the window takes no more
     * chains until its current ones are used.
     */
    private boolean barrier;
    /**
     * A frame read but not yet delivered (0: none): it was longer than the window, which had not
     * reached {@link #need} because the ring ran dry. Its first {@link #pendingInWindow} bytes are
     * in the window's chains, the rest at the start of the overflow area.
     */
    private long pendingLen;
    private long pendingInWindow;

    private int tapFd = -1;
    private int hdrSize = VirtioNetHdr.SIZE;
    private boolean mergeable;
    private boolean writeNumBuffers;
    /** Window target: the largest frame plus header the guest may be handed. */
    private long need;
    /** With MRG_RXBUF, the least we read with when the ring runs dry: a full non-GSO frame. */
    private long minNeed;
    private int maxChains;
    private PacketCapture capture;
    private boolean needsBuffers;
    private boolean notifyEnabled;
    private boolean readErrorLogged;
    /** Batched single-buffer reads ({@link #useRing}), else null. */
    private IoUring uring;
    private final int[] res = new int[RING_BATCH];
    private final MemorySegment oneIov;

    /**
     * @param ring        the RX ring this engine serves (owned by the same worker)
     * @param maxRingSize largest ring the engine may be given (sizes the window)
     */
    public RxEngine(int queuePair, Vring ring, Arena arena, QueueCounters counters, QueueLatency latency,
                    int maxRingSize) {
        this.queuePair = queuePair;
        this.ring = ring;
        this.queue = ring.queue();
        this.chain = new Chain(arena, CHAIN_IOV);
        this.counters = counters;
        this.latency = latency;
        this.iovs = arena.allocate((long) (MAX_IOV + 1) * NativeMemory.IOVEC_SIZE, 8);
        this.overflow = arena.allocate(VirtioNetHdr.MAX_GSO_BUFFER + FramePool.CACHE_LINE, FramePool.CACHE_LINE);
        this.numBuffers = arena.allocate(Short.BYTES, 2);
        this.oneIov = arena.allocate(NativeMemory.IOVEC_SIZE, 8);
        int cap = Math.min(maxRingSize, MAX_IOV);
        this.heads = new int[cap];
        this.lens = new int[cap];
        this.iovCounts = new int[cap];
        configure(-1, VirtioNetHdr.SIZE, false, false, 1500);
    }

    /**
     * Sets the tap fd and the frame geometry from negotiated features. Releases the window first
     * (its sizes were computed for the old geometry).
     */
    public void configure(int tapFd, int hdrSize, boolean mergeable, boolean guestGso, int mtu) {
        releaseWindow();
        this.tapFd = tapFd;
        this.hdrSize = hdrSize;
        this.mergeable = mergeable;
        this.writeNumBuffers = hdrSize == VirtioNetHdr.SIZE;
        this.minNeed = (long) mtu + VirtioNetHdr.ETH_HLEN + VirtioNetHdr.VLAN_HLEN + hdrSize;
        this.need = guestGso ? Math.max(minNeed, VirtioNetHdr.MAX_GSO_FRAME + hdrSize) : minNeed;
        this.maxChains = mergeable ? heads.length : 1;
        bindRingFile();
    }

    /**
     * Batches single-buffer reads through {@code ring} from now on (see the class comment), or
     * not when null. The ring belongs to this engine's worker and is idle between
     * {@link #process} calls; the engine does not close it. Worker thread.
     */
    public void useRing(IoUring ring) {
        this.uring = ring;
        bindRingFile();
    }

    private void bindRingFile() {
        if (uring != null) {
            uring.registerFile(tapFd); // -1 just drops an earlier registration
        }
    }

    public void setCapture(PacketCapture capture) {
        this.capture = capture;
    }

    /** True when the last {@link #process} stopped for lack of guest buffers. */
    public boolean needsBuffers() {
        return needsBuffers;
    }

    /** io_uring submissions of two or more single-buffer reads so far (tests). */
    long batchedReads() {
        return batchedReads;
    }

    /** True while a frame that spilled past a short window is held for more buffers (tests). */
    boolean holdingFrame() {
        return pendingLen > 0;
    }

    /** The guest kicked the RX ring: buffers may have arrived. */
    public void kicked() {
        needsBuffers = false;
    }

    /**
     * Gives the window's chains back to the ring (stop, feature change, memory swap, disable):
     * {@link DeviceQueue#returnInFlight} rewinds them when they are the last chains taken, else
     * (an unusable chain was returned, or a later buffer of a batched read filled first, while the
     * window held older ones) returns them used with length 0 — rewinding then would hand chains
     * already used out again.
     */
    public void releaseWindow() {
        queue = ring.queue();
        queue.returnInFlight();
        windowChains = 0;
        windowIov = 0;
        windowBytes = 0;
        barrier = false;
        pendingLen = 0; // its chains went back unused: the frame is lost, as on any ring stop
        needsBuffers = false;
    }

    /**
     * Reads up to {@code budget} frames from the tap into guest buffers, publishes them and calls
     * the guest if it wants a call.
     *
     * @return frames delivered or dropped
     */
    public int process(int budget, long cycleStart) {
        queue = ring.queue();
        log = ring.dirtyLog();
        if (notifyEnabled) {
            queue.disableNotification();
            notifyEnabled = false;
        }
        needsBuffers = false;
        int done = 0;
        int published = 0;
        long bytes = 0;
        while (done < budget) {
            int bad = fill();
            published += bad;
            if (pendingLen > 0) {
                if (windowBytes < pendingLen) {
                    if (!windowFull) {
                        needsBuffers = true; // the guest's kick brings the rest
                        break;
                    }
                    pendingLen = 0; // the window cannot grow enough: never deliver it cut short
                    counters.drop(DropReason.RX_TOO_BIG);
                    continue;
                }
                // The chains posted since the read take the part that spilled into the overflow area.
                NativeMemory.scatter(overflow, 0, iovs, windowIov, pendingInWindow, pendingLen - pendingInWindow);
                long n = pendingLen;
                pendingLen = 0;
                published += deliver(n);
                bytes += n - hdrSize;
                counters.increment(Counter.RX_FRAMES);
                continue;
            }
            if (!readyToRead()) {
                needsBuffers = true;
                break;
            }
            // IN_ORDER: one read at a time — a batch may leave a buffer empty (tap empty, a frame cut)
            // while a later one takes the next frame, and the queue then publishes both in ring
            // order: the guest would get the frames swapped.
            int single = singleBuffers(Math.min(budget - done, uring != null && !queue.inOrder() ? batchTarget : 1));
            if (single > 0) {
                long r = single > 1 ? readBatch(single) : readOne();
                if (r < 0) {
                    break; // tap empty, or a read error (logged)
                }
                done += (int) (r >>> 32);
                published += (int) r;
                bytes += batchBytes;
                if (tapEmpty) {
                    break; // one of the reads found the tap empty
                }
                continue;
            }
            iovSet(windowIov, overflow.address(), overflow.byteSize());
            long n;
            try {
                n = Fds.readvNonBlocking(tapFd, iovs.address(), windowIov + 1);
            } catch (NativeException e) {
                if (e.errno() == Errno.EFAULT) {
                    // The iovecs were validated against the mapped table: only pages that vanished
                    // under a mapping (a front-end shrank its file) fault. The worker stops the pair.
                    throw new MemoryFault("q" + queuePair + " RX: readv into guest buffers: EFAULT");
                }
                logReadError(e.getMessage());
                break;
            }
            if (n == Fds.WOULD_BLOCK || n <= 0) {
                break;
            }
            done++;
            if (n > windowBytes) {
                if (log != null) {
                    logWindow(0, windowBytes); // the window's buffers were written, delivered or not
                }
                if (mergeable && !windowFull && n <= need) {
                    // Read with a window short of `need` (the ring ran dry) and this frame is
                    // larger: keep it and finish it when the guest posts more buffers.
                    pendingLen = n;
                    pendingInWindow = windowBytes;
                    continue;
                }
                // Spilled into the overflow area: the guest's buffers cannot take this frame.
                counters.drop(DropReason.RX_TOO_BIG);
                continue;
            }
            int used = deliver(n);
            published += used;
            bytes += n - hdrSize;
            counters.increment(Counter.RX_FRAMES);
        }
        if (published > 0) {
            counters.add(Counter.RX_BYTES, bytes);
            counters.increment(Counter.RX_BATCHES);
            queue.publishUsed();
            latency.recordBatch(JvhostEvents.RX, System.nanoTime() - cycleStart, done);
            signal();
        }
        if (needsBuffers) {
            counters.increment(Counter.RX_NO_BUFFERS);
        }
        return done + published;
    }

    private boolean readyToRead() {
        if (windowChains == 0) {
            return false;
        }
        // Short of `need` only when the ring ran dry (or the window cannot grow). Waiting for the
        // whole `need` (64 KiB with guest GSO) whenever the guest keeps fewer bytes posted than
        // that stalled RX to one frame per kick round trip: a small ring lent us all its buffers,
        // one frame took one, and we waited for it back. So read once a full non-GSO frame fits
        // (or the window cannot grow); a larger frame that spills is held as pendingLen and
        // finished from the overflow area when more buffers arrive — never cut short.
        return !mergeable || windowBytes >= minNeed || windowFull;
    }

    /**
     * Tops the window up to {@link #need}. Unusable chains (read-only pieces, no writable bytes) are
     * returned at once with length 0 and counted.
     *
     * @return used entries added for unusable chains
     */
    private int fill() {
        int bad = 0;
        if (windowChains == 0) {
            barrier = false;
        }
        windowFull = barrier || windowChains >= maxChains || windowChains >= queue.size();
        while ((windowBytes < need || wantsMoreSingle()) && !windowFull) {
            int r = queue.next(chain);
            if (r != DeviceQueue.CHAIN) {
                break;
            }
            int cnt = chain.writableCount();
            if (chain.readableCount() != 0 || chain.writableBytes() == 0 || chain.writableBytes() > Integer.MAX_VALUE
                    || (windowChains == 0 && chain.writableBytes() < hdrSize)) {
                counters.drop(DropReason.RX_BAD_CHAIN);
                queue.addUsed(chain.head(), 0);
                bad++;
                if (windowChains > 0 && queue.inOrder()) {
                    barrier = true;
                    windowFull = true;
                    break;
                }
                continue;
            }
            if (windowIov + cnt > MAX_IOV) {
                queue.rewind(1); // next frame's window will start with it
                windowFull = true;
                break;
            }
            MemorySegment.copy(chain.writable(), 0, iovs, (long) windowIov * NativeMemory.IOVEC_SIZE,
                    (long) cnt * NativeMemory.IOVEC_SIZE);
            heads[windowChains] = chain.head();
            lens[windowChains] = (int) chain.writableBytes();
            iovCounts[windowChains] = cnt;
            windowChains++;
            windowIov += cnt;
            windowBytes += chain.writableBytes();
            windowFull = windowChains >= maxChains || windowChains >= queue.size();
        }
        return bad;
    }

    /**
     * With a ring, the window takes chains beyond {@link #need} while they are single buffers that
     * hold any frame, up to {@link #RING_BATCH}: one submission then reads that many frames.
     */
    private boolean wantsMoreSingle() {
        return uring != null && windowChains > 0 && windowChains < RING_BATCH && pendingLen == 0
                && iovCounts[windowChains - 1] == 1 && lens[windowChains - 1] > need;
    }

    /** Leading window chains (at most {@code max}) that are one buffer larger than any frame. */
    private int singleBuffers(int max) {
        int j = 0;
        while (j < max && j < windowChains && iovCounts[j] == 1 && lens[j] > need) {
            j++;
        }
        return j;
    }

    /** Payload bytes of the frames the last {@link #readOne}/{@link #readBatch} delivered. */
    private long batchBytes;
    /** The last {@link #readBatch} found the tap empty (or failed) in one of its reads. */
    private boolean tapEmpty;
    private long batchedReads;
    /**
     * Reads per submission, adapted to how many frames the tap held: a read that finds the tap
     * empty still costs a trip through the tap driver, so after a batch that came back short the
     * next asks for one more than it got, after a full one for twice as many (2 ..
     * {@link #RING_BATCH}).
     */
    private int batchTarget = RING_BATCH;

    /**
     * One {@code read} into the first window chain (a single buffer larger than any frame).
     *
     * @return -1 when the tap is empty or failed, else frames read (high 32 bits) and used
     *         entries added (low 32 bits)
     */
    private long readOne() {
        long base = iovs.get(ValueLayout.JAVA_LONG, 0);
        long n;
        try {
            n = Fds.readNonBlocking(tapFd, base, lens[0]);
        } catch (NativeException e) {
            if (e.errno() == Errno.EFAULT) {
                throw new MemoryFault("q" + queuePair + " RX: read into a guest buffer: EFAULT");
            }
            logReadError(e.getMessage());
            return -1;
        }
        if (n == Fds.WOULD_BLOCK || n <= 0) {
            return -1;
        }
        batchBytes = 0;
        tapEmpty = false;
        if (n >= lens[0]) {
            counters.drop(DropReason.RX_TOO_BIG); // filled the buffer: cut by the tap
            if (log != null) {
                log.markHost(queue.memory(), base, lens[0]);
            }
            return 1L << 32;
        }
        handOver(0, n);
        batchBytes = n - hdrSize;
        compact(1, 1);
        return 1L << 32 | 1;
    }

    /**
     * {@code m} single-buffer reads, one per leading window chain, in one io_uring submission.
     * Frames go to the guest in the order read; chains whose read found nothing (or a frame cut
     * to the buffer, dropped) stay in the window in their order.
     *
     * @return -1 when nothing was read (tap empty or failed), else frames read (high 32 bits) and
     *         used entries added (low 32 bits)
     */
    private long readBatch(int m) {
        for (int j = 0; j < m; j++) {
            long base = iovs.get(ValueLayout.JAVA_LONG, (long) j * NativeMemory.IOVEC_SIZE);
            uring.prepare(IoUring.OP_READ, 0, base, lens[j], IoUring.SQE_FIXED_FILE, IoUring.RWF_NOWAIT, j);
        }
        uring.submitAndReap(m, res); // RWF_NOWAIT on a non-blocking tap: they complete during the enter
        batchedReads++;
        int frames = 0;
        int delivered = 0;
        long payload = 0;
        boolean empty = false;
        int fault = 0;
        for (int j = 0; j < m; j++) {
            int r = res[j];
            if (r > 0) {
                frames++;
                if (r >= lens[j]) {
                    counters.drop(DropReason.RX_TOO_BIG); // filled the buffer: cut by the tap
                    if (log != null) {
                        log.markHost(queue.memory(), NativeMemory.iovBase(iovs, j), lens[j]);
                    }
                    res[j] = -1;
                    continue;
                }
                handOver(j, r);
                payload += r - hdrSize;
                delivered++;
            } else if (r == -Errno.EAGAIN || r == 0) {
                empty = true;
                res[j] = -1;
            } else {
                res[j] = -1;
                if (-r == Errno.EFAULT) {
                    fault++;
                } else {
                    logReadError("io_uring read: errno " + -r);
                    empty = true;
                }
            }
        }
        // Remove the delivered chains, keep the others in order.
        int w = 0;
        for (int j = 0; j < windowChains; j++) {
            if (j < m && res[j] > 0) {
                continue;
            }
            if (w != j) {
                heads[w] = heads[j];
                lens[w] = lens[j];
                iovCounts[w] = iovCounts[j];
            }
            w++;
        }
        compactIovs(m, delivered);
        windowChains = w;
        batchBytes = payload;
        batchTarget = empty ? Math.max(2, frames + 1) : Math.min(RING_BATCH, 2 * m);
        if (fault > 0) {
            throw new MemoryFault("q" + queuePair + " RX: read into a guest buffer: EFAULT");
        }
        if (frames == 0) {
            return -1;
        }
        tapEmpty = empty;
        return (long) frames << 32 | delivered;
    }

    /** Publishes chain {@code j} (a single buffer) holding an {@code n}-byte frame. */
    private void handOver(int j, long n) {
        long base = iovs.get(ValueLayout.JAVA_LONG, (long) j * NativeMemory.IOVEC_SIZE);
        if (writeNumBuffers) {
            NativeMemory.ALL.set(VirtioNetHdr.LE16, base + VirtioNetHdr.NUM_BUFFERS_OFFSET, (short) 1);
        }
        DirtyLog l = log;
        if (l != null) {
            l.markHost(queue.memory(), base, n); // after the last write into the buffer, before the publish
        }
        PacketCapture c = capture;
        if (c != null) {
            oneIov.set(ValueLayout.JAVA_LONG, 0, base);
            oneIov.set(ValueLayout.JAVA_LONG, Long.BYTES, n);
            if (!c.captureIovecs(queuePair, FrameMeta.DIR_RX, oneIov, 1, hdrSize, n - hdrSize)) {
                counters.drop(DropReason.CAPTURE_NO_BUFFER);
            }
        }
        queue.addUsed(heads[j], (int) n);
        counters.increment(Counter.RX_FRAMES);
        windowBytes -= lens[j];
    }

    /** The first {@code chains} chains ({@code iovUsed} iovecs) left the window: moves the rest to the front. */
    private void compact(int chains, int iovUsed) {
        int restChains = windowChains - chains;
        if (restChains > 0) {
            System.arraycopy(heads, chains, heads, 0, restChains);
            System.arraycopy(lens, chains, lens, 0, restChains);
            System.arraycopy(iovCounts, chains, iovCounts, 0, restChains);
            MemorySegment.copy(iovs, (long) iovUsed * NativeMemory.IOVEC_SIZE, iovs, 0,
                    (long) (windowIov - iovUsed) * NativeMemory.IOVEC_SIZE);
        }
        windowChains = restChains;
        windowIov -= iovUsed;
    }

    /**
     * After {@link #readBatch}: drops the iovecs of the delivered chains among the first {@code m}
     * (one iovec each, marked by {@code res[j] > 0}) and moves the rest down, in order.
     */
    private void compactIovs(int m, int delivered) {
        if (delivered == 0) {
            return;
        }
        long sz = NativeMemory.IOVEC_SIZE;
        int w = 0;
        for (int j = 0; j < m; j++) {
            if (res[j] > 0) {
                continue;
            }
            if (w != j) {
                MemorySegment.copy(iovs, j * sz, iovs, w * sz, sz);
            }
            w++;
        }
        // Chains after the first m keep their iovecs in one run: move it down as a block.
        int tail = windowIov - m;
        if (tail > 0) {
            MemorySegment.copy(iovs, m * sz, iovs, w * sz, tail * sz);
        }
        windowIov -= delivered;
    }

    /** Hands the first chains of the window holding {@code n} bytes to the guest; returns how many. */
    private int deliver(long n) {
        int k = 0;
        int iovUsed = 0;
        long left = n;
        while (left > 0) {
            long part = Math.min(left, lens[k]);
            left -= part;
            iovUsed += iovCounts[k];
            k++;
        }
        if (writeNumBuffers) {
            numBuffers.set(VirtioNetHdr.LE16, 0, (short) k);
            NativeMemory.scatter(numBuffers, 0, iovs, windowIov, VirtioNetHdr.NUM_BUFFERS_OFFSET, Short.BYTES);
        }
        if (log != null) {
            logWindow(0, n); // after the last write into the frame's buffers, before the publish
        }
        PacketCapture c = capture;
        if (c != null && !c.captureIovecs(queuePair, FrameMeta.DIR_RX, iovs, iovUsed, hdrSize, n - hdrSize)) {
            counters.drop(DropReason.CAPTURE_NO_BUFFER);
        }
        left = n;
        for (int i = 0; i < k; i++) {
            int part = (int) Math.min(left, lens[i]);
            queue.addUsed(heads[i], part);
            left -= part;
        }
        // The capacity of the chains handed over must be summed before the shift below moves the
        // remaining chains' lengths into their slots: with unequal buffer sizes (Linux's mergeable
        // buffers) summing afterwards made windowBytes drift from the real window, so a frame could
        // be taken as fitting while part of it had gone to the overflow area.
        long handedOver = capacityOf(k);
        // Shift the rest of the window to the front (readv needs the iovecs at the array start).
        compact(k, iovUsed);
        windowBytes -= handedOver;
        return k;
    }

    /** Bytes of the first {@code k} chains (their full capacity leaves the window, not just what was written). */
    private long capacityOf(int k) {
        long s = 0;
        for (int i = 0; i < k; i++) {
            s += lens[i];
        }
        return s;
    }

    /**
     * Marks bytes {@code [from, to)} of the window (its iovecs laid end to end from the first) in
     * the dirty log.
     */
    private void logWindow(long from, long to) {
        GuestMemory m = queue.memory();
        long off = 0;
        for (int i = 0; i < windowIov && off < to; i++) {
            long len = NativeMemory.iovLen(iovs, i);
            long s = Math.max(from, off);
            long e = Math.min(to, off + len);
            if (s < e) {
                log.markHost(m, NativeMemory.iovBase(iovs, i) + (s - off), e - s);
            }
            off += len;
        }
    }

    private void iovSet(int i, long base, long len) {
        iovs.set(ValueLayout.JAVA_LONG, (long) i * NativeMemory.IOVEC_SIZE, base);
        iovs.set(ValueLayout.JAVA_LONG, (long) i * NativeMemory.IOVEC_SIZE + Long.BYTES, len);
    }

    private void signal() {
        int r = ring.notifyUsed();
        if (r == Vring.CALLED) {
            counters.increment(Counter.RX_CALLS);
        } else if (r == Vring.SUPPRESSED) {
            counters.increment(Counter.CALLS_SUPPRESSED);
        }
    }

    /**
     * Before sleeping for lack of buffers: enables the guest's kick and re-checks the ring.
     *
     * @return true when buffers arrived meanwhile (process again instead of sleeping)
     */
    public boolean armNotify() {
        queue = ring.queue();
        notifyEnabled = true;
        if (queue.enableNotification()) {
            needsBuffers = false;
            return true;
        }
        return false;
    }

    private void logReadError(String what) {
        JvhostEvents.tapError(latency.device(), queuePair, JvhostEvents.RX, what);
        if (!readErrorLogged) {
            readErrorLogged = true;
            LOG.log(System.Logger.Level.WARNING, "q{0} RX: tap read failed ({1}); further failures not logged: check"
                    + " that the tap still exists and is up (ip link show)", queuePair, what);
        }
    }
}
