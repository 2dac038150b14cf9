package io.jvhost.bench;

import io.jvhost.nativ.Epoll;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Iovec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of the syscall layer's hot-path wrappers (io.jvhost.nativ): errno capture, EAGAIN mapping,
 * per-thread scratch. Each must allocate nothing ({@code -prof gc}: gc.alloc.rate.norm ≈ 0 B/op).
 *
 * <p>Single-threaded: a queue-pair worker calls these from one thread. The measured time is mostly
 * the kernel's; the interesting number is the difference to a plain C call and the allocation.
 * {@code -Djvhost.native.critical=true} (via -jvmArgsAppend) links the never-blocking calls
 * (eventfd signal, fcntl, socket, ...) with {@code Linker.Option.critical(false)}, for comparison.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class SyscallBench {
    private static final int FRAME = 64;

    private Arena arena;
    private int eventFd;
    private int[] pipe;
    private int epollFd;
    private int idleFd;
    private MemorySegment out;
    private MemorySegment in;
    private MemorySegment txIov;
    private MemorySegment rxIov;
    private MemorySegment events;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        eventFd = EventFd.create(0, true);
        pipe = Fds.pipe(true);
        out = arena.allocate(FRAME, 64);
        in = arena.allocate(FRAME, 64);
        // Two iovecs per direction, as a virtio-net header + frame split would use.
        txIov = Iovec.allocate(arena, 2);
        Iovec.set(txIov, 0, out.address(), 12);
        Iovec.set(txIov, 1, out.address() + 12, FRAME - 12);
        rxIov = Iovec.allocate(arena, 2);
        Iovec.set(rxIov, 0, in.address(), 12);
        Iovec.set(rxIov, 1, in.address() + 12, FRAME - 12);
        epollFd = Epoll.create();
        idleFd = EventFd.create(0, true);
        Epoll.add(epollFd, idleFd, Epoll.EPOLLIN, 1L);
        events = Epoll.allocateEvents(arena, 16);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        Fds.close(eventFd);
        Fds.close(pipe[0]);
        Fds.close(pipe[1]);
        Fds.close(idleFd);
        Fds.close(epollFd);
        arena.close();
    }

    /** A kick: write 1 to an eventfd, then the consumer's read-and-reset. */
    @Benchmark
    public long eventfdSignalDrain() {
        EventFd.signal(eventFd);
        return EventFd.drain(eventFd);
    }

    /** 64 bytes out through writev and back in through readv (2 iovecs each) on a non-blocking pipe. */
    @Benchmark
    public long writevReadv64() {
        long w = Fds.writev(pipe[1], txIov, 2);
        long r = Fds.readv(pipe[0], rxIov, 2);
        return w + r;
    }

    /** readv on an empty non-blocking pipe: the EAGAIN → WOULD_BLOCK path (errno read, no exception). */
    @Benchmark
    public long readvWouldBlock() {
        return Fds.readv(pipe[0], rxIov, 2);
    }

    /** epoll_wait with timeout 0 on a set with one idle fd: a worker's busy-poll check. */
    @Benchmark
    public int epollWait0() {
        return Epoll.wait(epollFd, events, 16, 0);
    }
}
