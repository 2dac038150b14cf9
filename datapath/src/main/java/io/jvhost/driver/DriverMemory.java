package io.jvhost.driver;

import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * "Guest RAM" of the Java virtio front-end: one contiguous block, addressed by guest-physical
 * address {@code gpa = gpaBase + offset}, with a bump allocator for rings and buffers.
 *
 * <p>The RAM can be described to a back-end as one or several {@link MemoryRegion}s
 * ({@link #regions(int)}): several regions let tests exercise multi-region translation and buffers
 * that span a region boundary. The front-end virtual address of a region is its host address in
 * this process, like QEMU's.
 *
 * <p>{@link #allocate} uses an Arena (fd -1: an in-process back-end maps it with
 * {@link #guestMemory(int)}); {@link #memfd} backs it with a memfd mapped MAP_SHARED, whose fd a
 * back-end maps itself, exactly as with QEMU's {@code memory-backend-memfd,share=on}.
 *
 * <p>Threading: allocation is for set-up (single thread); reads and writes of the RAM follow the
 * virtqueue protocol.
 */
public final class DriverMemory implements AutoCloseable {
    /** Default guest-physical base: guest RAM rarely starts at 0 in tests, so 0 is never valid by accident. */
    public static final long DEFAULT_GPA_BASE = 0x1_0000_0000L;

    private final MemorySegment ram;
    private final long gpaBase;
    private final int fd;
    private final AutoCloseable owner;
    private long nextOffset;

    private DriverMemory(MemorySegment ram, long gpaBase, int fd, AutoCloseable owner) {
        if (gpaBase < 0 || gpaBase + ram.byteSize() < 0) {
            throw new IllegalArgumentException("gpa range overflows");
        }
        this.ram = ram;
        this.gpaBase = gpaBase;
        this.fd = fd;
        this.owner = owner;
    }

    /** In-process RAM of {@code size} bytes (page aligned, zeroed), no fd. */
    public static DriverMemory allocate(long size, long gpaBase) {
        Arena arena = Arena.ofShared();
        try {
            return new DriverMemory(arena.allocate(size, 4096), gpaBase, -1, arena);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /**
     * RAM in a memfd of {@code size} bytes (a multiple of 4096), mapped shared here; {@link #fd()}
     * is what a back-end receives with SET_MEM_TABLE. {@link #close()} unmaps and closes the fd.
     */
    public static DriverMemory memfd(String name, long size, long gpaBase) {
        int fd = Mman.memfdCreate(name);
        try {
            Mman.ftruncate(fd, size);
            MemorySegment ram = Mman.mmapShared(fd, 0, size);
            return new DriverMemory(ram, gpaBase, fd, () -> {
                try {
                    Mman.munmap(ram);
                } finally {
                    Fds.close(fd);
                }
            });
        } catch (RuntimeException | Error e) {
            Fds.closeQuietly(fd);
            throw e;
        }
    }

    /**
     * RAM over an existing mapping (e.g. a mapped memfd); {@code fd} is passed to back-ends,
     * {@code owner} is closed (unmap, close fd) by {@link #close()}.
     */
    public static DriverMemory ofSegment(MemorySegment ram, long gpaBase, int fd, AutoCloseable owner) {
        return new DriverMemory(ram, gpaBase, fd, owner);
    }

    public long gpaBase() {
        return gpaBase;
    }

    public long size() {
        return ram.byteSize();
    }

    public int fd() {
        return fd;
    }

    /** The whole RAM. */
    public MemorySegment ram() {
        return ram;
    }

    /** Bytes not yet allocated. */
    public long remaining() {
        return ram.byteSize() - nextOffset;
    }

    /**
     * Allocates {@code bytes} aligned to {@code align} (a power of two) and returns its guest
     * physical address. Memory is never freed individually (rings and buffer pools live as long
     * as the device).
     *
     * @throws IllegalStateException when the RAM is exhausted
     */
    public long alloc(long bytes, long align) {
        if (align <= 0 || (align & (align - 1)) != 0) {
            throw new IllegalArgumentException("alignment not a power of two: " + align);
        }
        long off = (nextOffset + align - 1) & -align;
        if (bytes < 0 || off + bytes > ram.byteSize()) {
            throw new IllegalStateException("driver RAM exhausted: need " + bytes + " at " + off + " of " + ram.byteSize());
        }
        nextOffset = off + bytes;
        return gpaBase + off;
    }

    /** A segment over {@code [gpa, gpa+len)} of this RAM. */
    public MemorySegment at(long gpa, long len) {
        return ram.asSlice(offsetOf(gpa, len), len);
    }

    /** Host (and front-end virtual) address of {@code gpa}. */
    public long hostAddress(long gpa) {
        return ram.address() + offsetOf(gpa, 0);
    }

    /** Front-end virtual address of {@code gpa}, as sent in SET_VRING_ADDR. */
    public long userAddress(long gpa) {
        return hostAddress(gpa);
    }

    private long offsetOf(long gpa, long len) {
        long off = gpa - gpaBase;
        if (off < 0 || len < 0 || off + len > ram.byteSize()) {
            throw new IndexOutOfBoundsException("gpa 0x" + Long.toHexString(gpa) + "+" + len + " outside driver RAM");
        }
        return off;
    }

    /** The RAM as one region. */
    public MemoryRegion region() {
        return new MemoryRegion(gpaBase, ram.byteSize(), ram.address(), 0, fd);
    }

    /**
     * The RAM described as {@code n} equal, guest-physically contiguous regions (size divisible
     * by {@code n} and by 4096 per piece).
     */
    public List<MemoryRegion> regions(int n) {
        long piece = ram.byteSize() / n;
        if (n < 1 || piece * n != ram.byteSize() || piece % 4096 != 0) {
            throw new IllegalArgumentException("cannot split " + ram.byteSize() + " bytes into " + n + " page-sized regions");
        }
        List<MemoryRegion> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(new MemoryRegion(gpaBase + i * piece, piece, ram.address() + i * piece, i * piece, fd));
        }
        return out;
    }

    /** A back-end view of this RAM (in-process, no mapping) split into {@code n} regions. */
    public GuestMemory guestMemory(int n) {
        List<MemoryRegion> rs = regions(n);
        List<MemorySegment> segs = new ArrayList<>(n);
        for (MemoryRegion r : rs) {
            segs.add(ram.asSlice(r.mmapOffset(), r.size()));
        }
        return GuestMemory.ofSegments(rs, segs);
    }

    @Override
    public void close() {
        try {
            owner.close();
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IllegalStateException("closing driver RAM", e);
        }
    }
}
