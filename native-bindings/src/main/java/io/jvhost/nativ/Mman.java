package io.jvhost.nativ;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.jvhost.nativ.gen.Linux;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * memfd_create, ftruncate, mmap/munmap of shared file mappings (guest RAM).
 *
 * <p>{@link #mmapShared} returns a segment of the global scope: it stays accessible until
 * {@link #munmap} and touching it afterwards crashes the process. The owner (GuestMemory) must make
 * sure no thread uses a segment when it is unmapped. Thread-safe.
 */
public final class Mman {
    static {
        // First, before any generated layout is touched: an implicit restricted call there would
        // only warn and then let the module through, and we want a clear failure instead.
        Native.checkNativeAccess();
    }

    public static final int MFD_CLOEXEC = Linux.MFD_CLOEXEC();
    /** memfd flag: the file accepts seals ({@link Fds#addSeals}); without it it is born F_SEAL_SEAL. */
    public static final int MFD_ALLOW_SEALING = Linux.MFD_ALLOW_SEALING();
    public static final int PROT_READ = Linux.PROT_READ();
    public static final int PROT_WRITE = Linux.PROT_WRITE();
    public static final int MAP_SHARED = Linux.MAP_SHARED();
    private static final long MAP_FAILED = Linux.MAP_FAILED().address();

    private static final MethodHandle MEMFD_CREATE = Native.downcall("memfd_create",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT), true);
    private static final MethodHandle FTRUNCATE = Native.downcall("ftruncate",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG), false);
    private static final MethodHandle MMAP = Native.downcall("mmap",
            FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG), false);
    private static final MethodHandle MUNMAP = Native.downcall("munmap",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG), false);

    private Mman() {
    }

    /** {@code memfd_create(name, MFD_CLOEXEC)}: an anonymous memory file of size 0. */
    public static int memfdCreate(String name) {
        return memfdCreate(name, 0);
    }

    /** {@code memfd_create(name, MFD_CLOEXEC | extraFlags)}, e.g. {@link #MFD_ALLOW_SEALING}. */
    public static int memfdCreate(String name, int extraFlags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = Native.scratch();
            int fd = (int) MEMFD_CREATE.invokeExact(s, a.allocateFrom(name), MFD_CLOEXEC | extraFlags);
            if (fd < 0) {
                throw NativeException.of("memfd_create", name, Native.errno(s));
            }
            return fd;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Sets the size of the file behind {@code fd}. */
    public static void ftruncate(int fd, long size) {
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) FTRUNCATE.invokeExact(s, fd, size);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("ftruncate", "fd " + fd + ", size " + size, Native.errno(s));
        }
    }

    /**
     * {@code mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset)}: a segment of exactly
     * {@code length} bytes. {@code offset} must be page-aligned (the kernel says EINVAL otherwise).
     */
    public static MemorySegment mmapShared(int fd, long offset, long length) {
        if (length <= 0 || offset < 0) {
            throw new IllegalArgumentException("mmap fd " + fd + ": bad offset " + offset + " / length " + length);
        }
        MemorySegment s = Native.scratch();
        MemorySegment p;
        try {
            p = (MemorySegment) MMAP.invokeExact(s, MemorySegment.NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED,
                    fd, offset);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (p.address() == MAP_FAILED) {
            throw NativeException.of("mmap", "fd " + fd + ", offset " + offset + ", length " + length,
                    Native.errno(s));
        }
        return Native.view(p, length);
    }

    /** Unmaps a segment returned by {@link #mmapShared} (whole segment). */
    public static void munmap(MemorySegment mapping) {
        MemorySegment s = Native.scratch();
        int r;
        try {
            r = (int) MUNMAP.invokeExact(s, mapping, mapping.byteSize());
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r < 0) {
            throw NativeException.of("munmap", "address 0x" + Long.toHexString(mapping.address())
                    + ", length " + mapping.byteSize(), Native.errno(s));
        }
    }
}
