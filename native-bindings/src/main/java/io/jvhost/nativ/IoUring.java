package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * A minimal io_uring (Linux ≥ 5.1; the flags used here need ≥ 6.1): {@code io_uring_setup} and
 * {@code io_uring_enter} through libc's {@code syscall}, the SQ/CQ rings and the SQE array mmapped,
 * and accessors for submitting {@code READV}/{@code WRITEV} and reaping completions without a
 * syscall per operation.
 *
 * <h2>Layout</h2>
 * The kernel fills {@code struct io_uring_params} (120 bytes) with the ring offsets
 * ({@code io_sqring_offsets} at {@value #P_SQ_OFF}, {@code io_cqring_offsets} at {@value #P_CQ_OFF});
 * they are read once into fields. An SQE is 64 bytes ({@code SQE_*} offsets), a CQE 16 bytes
 * ({@code CQE_*}). All fields are native (little-endian on the only ABI jvhost supports, x86-64).
 *
 * <h2>Memory order (same protocol as a virtqueue, roles mirrored)</h2>
 * <ul>
 *   <li>SQ: we own the tail. SQEs and the index array are written plainly, then {@link #submit}
 *       release-stores {@code sq.tail}; the kernel acquire-loads it. The kernel advances
 *       {@code sq.head}, which we acquire-load to know which slots are free again.</li>
 *   <li>CQ: the kernel writes CQEs and release-stores {@code cq.tail}; {@link #completions}
 *       acquire-loads it before reading CQEs; {@link #consume} release-stores {@code cq.head} after
 *       we have read them, so the kernel never overwrites a CQE we still read.</li>
 * </ul>
 * Without SQPOLL the kernel touches the SQ only inside {@code io_uring_enter}, so these orders
 * matter against the kernel's task-work (which posts CQEs) and for the documented protocol.
 *
 * <h2>Threading</h2>
 * Single owner: one thread at a time (the queue-pair worker) prepares, submits and reaps (no
 * locking; hand-over between threads needs a happens-before edge, e.g. starting the thread).
 * {@link #close} on that thread or after it has stopped. The hot-path methods allocate nothing.
 */
public final class IoUring implements AutoCloseable {
    /** x86-64 syscall numbers (the same on every architecture using the generic table ≥ 5.1 too). */
    static final long SYS_IO_URING_SETUP = 425;
    static final long SYS_IO_URING_ENTER = 426;
    static final long SYS_IO_URING_REGISTER = 427;
    static final long REGISTER_FILES = 2;
    static final long UNREGISTER_FILES = 3;

    public static final int OP_NOP = 0;
    public static final int OP_READV = 1;
    public static final int OP_WRITEV = 2;
    /** Non-vectored: {@code addr}/{@code len} are one buffer (no iovec import in the kernel). */
    public static final int OP_READ = 22;
    public static final int OP_WRITE = 23;

    /** SQE flag: {@code fd} is an index into the files registered with {@link #registerFile}. */
    public static final int SQE_FIXED_FILE = 1;

    /** SQE flag: the next SQE starts only after this one completed successfully (else it is cancelled). */
    public static final int SQE_IO_LINK = 1 << 2;

    /**
     * preadv2 flag: fail with EAGAIN instead of waiting. Without it io_uring does not honour
     * O_NONBLOCK on files that support non-blocking attempts (pipes, sockets): it arms a poll and
     * completes the operation later, which the engines do not want (they hold no in-flight I/O).
     */
    public static final int RWF_NOWAIT = 8;

    static final int ENTER_GETEVENTS = 1;

    static final int SETUP_SUBMIT_ALL = 1 << 7;
    static final int SETUP_COOP_TASKRUN = 1 << 8;
    static final int FEAT_SINGLE_MMAP = 1;

    static final long OFF_SQ_RING = 0L;
    static final long OFF_CQ_RING = 0x8000000L;
    static final long OFF_SQES = 0x10000000L;

    // struct io_uring_params
    static final long PARAMS_SIZE = 120;
    static final long P_SQ_ENTRIES = 0;
    static final long P_CQ_ENTRIES = 4;
    static final long P_FLAGS = 8;
    static final long P_FEATURES = 20;
    static final long P_SQ_OFF = 40;
    static final long P_CQ_OFF = 80;
    // struct io_sqring_offsets / io_cqring_offsets (relative to P_SQ_OFF / P_CQ_OFF)
    static final long RO_HEAD = 0;
    static final long RO_TAIL = 4;
    static final long RO_RING_MASK = 8;
    static final long RO_RING_ENTRIES = 12;
    static final long SQO_ARRAY = 24;
    static final long CQO_CQES = 20;

    // struct io_uring_sqe (64 bytes)
    public static final long SQE_SIZE = 64;
    static final long SQE_OPCODE = 0;
    static final long SQE_FLAGS = 1;
    static final long SQE_IOPRIO = 2;
    static final long SQE_FD = 4;
    static final long SQE_OFF = 8;
    static final long SQE_ADDR = 16;
    static final long SQE_LEN = 24;
    static final long SQE_RW_FLAGS = 28;
    static final long SQE_USER_DATA = 32;
    static final long SQE_TAIL = 40; // buf_index .. pad: 24 bytes zeroed

    // struct io_uring_cqe (16 bytes)
    public static final long CQE_SIZE = 16;
    static final long CQE_USER_DATA = 0;
    static final long CQE_RES = 8;
    static final long CQE_FLAGS = 12;

    private static final ValueLayout.OfInt U32 = JAVA_INT.withOrder(ByteOrder.nativeOrder());
    private static final ValueLayout.OfLong U64 = JAVA_LONG.withOrder(ByteOrder.nativeOrder());
    /** Two SQE fields packed into one store: the packing above assumes this byte order. */
    private static final ValueLayout.OfLong LE64 = JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned 32-bit access for the head/tail words shared with the kernel (acquire/release). */
    private static final VarHandle INDEX = U32.varHandle();

    /* syscall(long nr, ...): every variadic argument passed as a long (what the kernel reads). */
    private static final MethodHandle SETUP = Native.downcall("syscall",
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS), false, Linker.Option.firstVariadicArg(1));
    private static final MethodHandle ENTER = Native.downcall("syscall",
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
            false, Linker.Option.firstVariadicArg(1));
    /**
     * The same call without errno capture, for {@link #submit}'s fast path: only long arguments, so
     * nothing is allocated whether or not the JIT inlines the downcall into the caller (a capture
     * segment is sliced per call, and that slice is only scalar-replaced when it is). A failed
     * enter is repeated through {@link #ENTER} to learn its errno.
     */
    private static final MethodHandle ENTER_FAST = Native.plainDowncall("syscall",
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
            Linker.Option.firstVariadicArg(1));

    private static final MethodHandle REGISTER = Native.downcall("syscall",
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_LONG),
            false, Linker.Option.firstVariadicArg(1));

    private static volatile String unavailable;
    private static volatile boolean probed;

    private final int fd;
    private final MemorySegment rings;
    private final MemorySegment cqRing; // == rings with FEAT_SINGLE_MMAP
    private final MemorySegment sqes;
    private final int sqEntries;
    private final int sqMask;
    private final long sqHead;
    private final long sqTail;
    private final long sqArray;
    private final int cqEntries;
    private final int cqMask;
    private final long cqHead;
    private final long cqTail;
    private final long cqes;

    /** Next SQ slot to fill (free-running, wraps at 2^32 like the kernel's). */
    private int localTail;
    /** sq.head as last acquire-loaded; re-read only when the SQ looks full by it. */
    private int cachedSqHead;
    /** SQEs prepared since the last {@link #submit}. */
    private int toSubmit;
    /** Our copy of cq.head (free-running). */
    private int localCqHead;
    private boolean closed;
    private boolean filesRegistered;

    private IoUring(int fd, MemorySegment params, MemorySegment rings, MemorySegment cqRing, MemorySegment sqes) {
        this.fd = fd;
        this.rings = rings;
        this.cqRing = cqRing;
        this.sqes = sqes;
        this.sqEntries = params.get(U32, P_SQ_ENTRIES);
        this.cqEntries = params.get(U32, P_CQ_ENTRIES);
        this.sqHead = params.get(U32, P_SQ_OFF + RO_HEAD);
        this.sqTail = params.get(U32, P_SQ_OFF + RO_TAIL);
        this.sqMask = rings.get(U32, params.get(U32, P_SQ_OFF + RO_RING_MASK));
        this.sqArray = params.get(U32, P_SQ_OFF + SQO_ARRAY);
        this.cqHead = params.get(U32, P_CQ_OFF + RO_HEAD);
        this.cqTail = params.get(U32, P_CQ_OFF + RO_TAIL);
        this.cqMask = cqRing.get(U32, params.get(U32, P_CQ_OFF + RO_RING_MASK));
        this.cqes = params.get(U32, P_CQ_OFF + CQO_CQES);
        // The index array maps slot i to SQE i once and for all: we always fill SQEs in ring order.
        for (int i = 0; i < sqEntries; i++) {
            rings.set(U32, sqArray + 4L * i, i);
        }
        this.localTail = (int) INDEX.getAcquire(rings, sqTail);
        this.cachedSqHead = (int) INDEX.getAcquire(rings, sqHead);
        this.localCqHead = (int) INDEX.getAcquire(cqRing, cqHead);
    }

    /**
     * Sets up a ring with at least {@code entries} SQ entries (the kernel rounds up to a power of
     * two) and twice as many CQ entries. The calling thread becomes the single issuer.
     *
     * @throws NativeException ENOSYS (kernel without io_uring), EPERM (disabled by
     *                         {@code kernel.io_uring_disabled} or a seccomp filter), ENOMEM, ...
     */
    public static IoUring create(int entries) {
        if (entries < 1 || entries > 32768) {
            throw new IllegalArgumentException("io_uring entries " + entries);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment params = a.allocate(PARAMS_SIZE, 8);
            // No SINGLE_ISSUER: the kernel binds it to the creating thread, and a worker's ring is
            // created by the control thread.
            int flags = SETUP_SUBMIT_ALL | SETUP_COOP_TASKRUN;
            params.set(U32, P_FLAGS, flags);
            int fd;
            try {
                fd = setup(entries, params);
            } catch (NativeException e) {
                if (e.errno() != Errno.EINVAL) {
                    throw e;
                }
                // Older kernel without some of the flags: plain ring (ordering and semantics stay the same).
                params.fill((byte) 0);
                fd = setup(entries, params);
            }
            try {
                int features = params.get(U32, P_FEATURES);
                int sqEntries = params.get(U32, P_SQ_ENTRIES);
                int cqEntries = params.get(U32, P_CQ_ENTRIES);
                long sqSize = params.get(U32, P_SQ_OFF + SQO_ARRAY) + 4L * sqEntries;
                long cqSize = params.get(U32, P_CQ_OFF + CQO_CQES) + CQE_SIZE * cqEntries;
                MemorySegment rings;
                MemorySegment cq;
                if ((features & FEAT_SINGLE_MMAP) != 0) {
                    rings = Mman.mmapShared(fd, OFF_SQ_RING, Math.max(sqSize, cqSize));
                    cq = rings;
                } else {
                    rings = Mman.mmapShared(fd, OFF_SQ_RING, sqSize);
                    cq = Mman.mmapShared(fd, OFF_CQ_RING, cqSize);
                }
                MemorySegment sqes = Mman.mmapShared(fd, OFF_SQES, SQE_SIZE * sqEntries);
                return new IoUring(fd, params, rings, cq, sqes);
            } catch (RuntimeException e) {
                Fds.closeQuietly(fd);
                throw e;
            }
        }
    }

    /**
     * Null when this process can set up an io_uring, else why not (probed once with a tiny ring,
     * e.g. "io_uring_setup: Operation not permitted (EPERM)"). Any thread.
     */
    public static String unavailableReason() {
        if (!probed) {
            synchronized (IoUring.class) {
                if (!probed) {
                    try {
                        create(2).close();
                        unavailable = null;
                    } catch (NativeException | UnsatisfiedLinkError e) {
                        unavailable = e.getMessage();
                    }
                    probed = true;
                }
            }
        }
        return unavailable;
    }

    private static int setup(int entries, MemorySegment params) {
        MemorySegment s = Native.scratch();
        long r;
        try {
            r = (long) SETUP.invokeExact(s, SYS_IO_URING_SETUP, (long) entries, params);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("io_uring_setup", entries + " entries", Native.errno(s));
        }
        return (int) r;
    }

    public int fd() {
        return fd;
    }

    /**
     * Registers {@code file} as fixed file 0 (replacing an earlier registration; -1 just drops it),
     * so SQEs with {@link #SQE_FIXED_FILE} and fd 0 skip the per-operation file lookup and
     * reference count. Owner thread, nothing in flight.
     */
    public void registerFile(int file) {
        if (filesRegistered) {
            register(UNREGISTER_FILES, MemorySegment.NULL, 0);
            filesRegistered = false;
        }
        if (file >= 0) {
            MemorySegment one = Native.scratch().asSlice(Native.SCRATCH_OFFSET, 4);
            one.set(U32, 0, file);
            register(REGISTER_FILES, one, 1);
            filesRegistered = true;
        }
    }

    private void register(long opcode, MemorySegment arg, long n) {
        MemorySegment s = Native.scratch();
        long r;
        try {
            r = (long) REGISTER.invokeExact(s, SYS_IO_URING_REGISTER, (long) fd, opcode, arg, n);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("io_uring_register", "opcode " + opcode, Native.errno(s));
        }
    }

    /** SQ ring size (a power of two ≥ the requested entries). */
    public int sqEntries() {
        return sqEntries;
    }

    public int cqEntries() {
        return cqEntries;
    }

    /** SQ slots free for {@link #prepare} (acquire-loads the kernel's sq.head). */
    public int sqSpace() {
        int head = (int) INDEX.getAcquire(rings, sqHead);
        return sqEntries - (localTail - head);
    }

    /**
     * Fills the next SQE: a {@code readv}/{@code writev} ({@code op}) of {@code iovcnt} iovecs at
     * native address {@code iov} (for {@link #OP_READ}/{@link #OP_WRITE}: a buffer and its length) on {@code fd}, file offset -1 (current position: taps, pipes,
     * sockets), {@code sqeFlags} ({@link #SQE_IO_LINK} or 0), {@code rwFlags} ({@link #RWF_NOWAIT} or
     * 0). Visible to the kernel only after
     * {@link #submit}. The iovec array must stay valid until the operation completes (the kernel
     * copies it at submission time for these ops, but callers should not rely on that).
     *
     * @return false when the SQ is full (nothing prepared)
     */
    public boolean prepare(int op, int fd, long iov, int iovcnt, int sqeFlags, int rwFlags, long userData) {
        if (localTail - cachedSqHead >= sqEntries) {
            // Looks full by the last head we saw: acquire-load the kernel's head (only then).
            cachedSqHead = (int) INDEX.getAcquire(rings, sqHead);
            if (localTail - cachedSqHead >= sqEntries) {
                return false;
            }
        }
        long e = (long) (localTail & sqMask) * SQE_SIZE;
        // opcode (u8) | flags (u8) | ioprio (u16, 0) | fd (s32), and len (u32) | rw_flags (u32), as
        // one 64-bit little-endian store each (SQEs are 64-byte aligned).
        sqes.set(LE64, e + SQE_OPCODE, (op & 0xffL) | (sqeFlags & 0xffL) << 8 | (long) fd << 32);
        sqes.set(U64, e + SQE_OFF, -1L);
        sqes.set(U64, e + SQE_ADDR, iov);
        sqes.set(LE64, e + SQE_LEN, (iovcnt & 0xffffffffL) | (long) rwFlags << 32);
        sqes.set(U64, e + SQE_USER_DATA, userData);
        sqes.set(U64, e + SQE_TAIL, 0L);
        sqes.set(U64, e + SQE_TAIL + 8, 0L);
        sqes.set(U64, e + SQE_TAIL + 16, 0L);
        localTail++;
        toSubmit++;
        return true;
    }

    /**
     * Clears {@link #SQE_IO_LINK} on the last prepared SQE, so a batch built with links ends its
     * chain there (before {@link #submit}).
     */
    public void unlinkLast() {
        if (toSubmit > 0) {
            long e = (long) ((localTail - 1) & sqMask) * SQE_SIZE + SQE_FLAGS;
            sqes.set(ValueLayout.JAVA_BYTE, e, (byte) (sqes.get(ValueLayout.JAVA_BYTE, e) & ~SQE_IO_LINK));
        }
    }

    /**
     * Drops the SQEs prepared since the last {@link #submit} (the kernel has not seen them: the tail
     * was not published). For an owner that abandons a batch half-built, e.g. after an exception,
     * so stale SQEs never go out with a later batch.
     *
     * @return SQEs dropped
     */
    public int discardPrepared() {
        int published = (int) INDEX.get(rings, sqTail); // our own last store: plain read suffices
        int n = localTail - published;
        localTail = published;
        toSubmit -= n;
        return n;
    }

    /** SQEs prepared and not yet submitted. */
    public int prepared() {
        return toSubmit;
    }

    /**
     * Publishes the prepared SQEs (release-store of sq.tail) and enters the kernel once:
     * submits them and, when {@code waitFor} > 0, waits until that many completions are ready.
     * With {@code waitFor} = 0 it never blocks. Always asks for completion processing
     * (GETEVENTS), so task-work completions of this submission are posted before it returns.
     *
     * @return SQEs the kernel consumed
     * @throws NativeException on an enter error other than EINTR/EAGAIN/EBUSY (those return what
     *                         was consumed, possibly 0; retry later)
     */
    public int submit(int waitFor) {
        int n = toSubmit;
        // release: SQE contents and array entries written above are visible before the new tail
        INDEX.setRelease(rings, sqTail, localTail);
        long r;
        try {
            r = (long) ENTER_FAST.invokeExact(SYS_IO_URING_ENTER, (long) fd, (long) n, (long) waitFor,
                    (long) ENTER_GETEVENTS, 0L, 0L);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            r = enterCapturingErrno(n, waitFor);
            if (r < 0) {
                return 0;
            }
        }
        toSubmit = n - (int) r;
        return (int) r;
    }

    /**
     * Repeats a failed enter through the errno-capturing handle (the rare path: an interrupted
     * wait, a full completion queue). The SQ tail is already published, so the repeat submits what
     * the first did not; it waits as the first was asked to.
     *
     * @return SQEs consumed, or -1 for EINTR/EAGAIN/EBUSY (retry later)
     */
    private long enterCapturingErrno(int n, int waitFor) {
        MemorySegment s = Native.scratch();
        long r;
        try {
            r = (long) ENTER.invokeExact(s, SYS_IO_URING_ENTER, (long) fd, (long) n, (long) waitFor,
                    (long) ENTER_GETEVENTS, 0L, 0L);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            int e = Native.errno(s);
            if (e == Errno.EINTR || e == Errno.EAGAIN || e == Errno.EBUSY) {
                return -1;
            }
            throw NativeException.fast("io_uring_enter", fd, e);
        }
        return r;
    }

    /**
     * Submits everything prepared, waits until {@code n} completions are ready, stores each one's
     * {@code res} at {@code res[user_data]} (user_data = 0 .. n-1, as the engines number their
     * batch) and hands them back to the kernel. For owners that submit a batch and reap all of it
     * before the next: the TX and RX engines (their non-blocking tap I/O completes during the enter).
     */
    public void submitAndReap(int n, int[] res) {
        while (toSubmit > 0) {
            submit(0);
        }
        int got;
        while ((got = completions()) < n) {
            submit(n - got);
        }
        for (int i = 0; i < n; i++) {
            res[(int) cqeUserData(i)] = cqeRes(i);
        }
        consume(n);
    }

    /** Completions ready to read (acquire-load of cq.tail: the CQEs before it are visible). */
    public int completions() {
        return (int) INDEX.getAcquire(cqRing, cqTail) - localCqHead;
    }

    /** {@code user_data} of the {@code i}-th ready completion (0-based from the head; after {@link #completions}). */
    public long cqeUserData(int i) {
        return cqRing.get(U64, cqes + (long) ((localCqHead + i) & cqMask) * CQE_SIZE + CQE_USER_DATA);
    }

    /** {@code res} of the {@code i}-th ready completion: bytes, or a negative errno. */
    public int cqeRes(int i) {
        return cqRing.get(U32, cqes + (long) ((localCqHead + i) & cqMask) * CQE_SIZE + CQE_RES);
    }

    /** Hands {@code n} read completions back to the kernel (release-store of cq.head). */
    public void consume(int n) {
        localCqHead += n;
        // release: our reads of those CQEs happen before the kernel may reuse their slots
        INDEX.setRelease(cqRing, cqHead, localCqHead);
    }

    /** Unmaps the rings and closes the fd. Owner thread, or after it stopped; idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        Mman.munmap(sqes);
        if (cqRing != rings) {
            Mman.munmap(cqRing);
        }
        Mman.munmap(rings);
        Fds.close(fd);
    }
}
