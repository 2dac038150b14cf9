package io.jvhost.vhostuser;

import static io.jvhost.vhostuser.VhostUserMessage.*;

import io.jvhost.memory.FdMapper;
import io.jvhost.memory.GuestMemory;
import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.Fds;
import io.jvhost.jfr.JvhostEvents;

import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Builds and keeps a session's guest memory table from SET_MEM_TABLE, ADD_MEM_REG and REM_MEM_REG:
 * validates each region against its fd (size, range wrap, mmap offset past the end of the file),
 * refuses overlaps, notes regions whose file the front-end could still shrink, and maps them.
 *
 * <p>A new table is built beside the current one ({@link #replaced}, {@link #added},
 * {@link #removed}); the session hands it to the device and then {@link #commit}s it, which
 * retires the old table (unmapping what the new one does not share) — or {@link #abandon}s it
 * when the device refused it. So no worker ever touches an unmapped page.
 *
 * <p>Threading: the session's control thread.
 */
final class MemoryTables implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MemoryTables.class.getName());

    private final String name;
    /** Maps region fds; the fds themselves close with their message (the mapping keeps the memory). */
    private final FdMapper mapper = new FdMapper();
    /** Current table, null until the first one arrives. */
    private GuestMemory current;
    /** Unsealed regions were reported at INFO once in this session (later tables: DEBUG). */
    private boolean shrinkableLogged;

    MemoryTables(String name) {
        this.name = name;
    }

    /** The table in use, or null. */
    GuestMemory current() {
        return current;
    }

    // ------------------------------------------------------------------ messages

    /** SET_MEM_TABLE: the table the message describes (its fds, one per region, stay with the message). */
    GuestMemory replaced(VhostUserCodec codec) throws ProtocolException {
        int size = codec.size();
        if (size < MEM_REGIONS_OFFSET) {
            throw new ProtocolException("payload size " + size + " shorter than the region count");
        }
        int n = codec.payloadInt(MEM_NREGIONS_OFFSET);
        if (n < 1 || n > MEM_MAX_REGIONS) {
            throw new ProtocolException(Integer.toUnsignedString(n) + " regions, expected 1.." + MEM_MAX_REGIONS);
        }
        int exact = MEM_REGIONS_OFFSET + n * REGION_SIZE;
        int full = MEM_REGIONS_OFFSET + MEM_MAX_REGIONS * REGION_SIZE;
        // QEMU sends exactly n regions; a front-end sending the whole fixed-size struct is accepted too.
        if (size != exact && size != full) {
            throw new ProtocolException("payload size " + size + " for " + n + " regions, expected " + exact);
        }
        if (codec.fdCount() != n) {
            throw new ProtocolException(codec.fdCount() + " fds for " + n + " regions");
        }
        List<MemoryRegion> regions = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            regions.add(region(codec, MEM_REGIONS_OFFSET + i * REGION_SIZE, codec.fdAt(i)));
        }
        LOG.log(Level.DEBUG, "{0}: memory table with {1} regions", name, n);
        return replaced(regions);
    }

    /** ADD_MEM_REG: the current table plus the message's region, or null (a duplicate, see {@link #added(MemoryRegion)}). */
    GuestMemory added(VhostUserCodec codec) throws ProtocolException {
        return added(region(codec, SINGLE_REGION_OFFSET, codec.fdAt(0)));
    }

    /** REM_MEM_REG: the current table without the message's region, or null (not in it). */
    GuestMemory removed(VhostUserCodec codec) throws ProtocolException {
        return removed(region(codec, SINGLE_REGION_OFFSET, -1));
    }

    private static MemoryRegion region(VhostUserCodec codec, int base, int fd) throws ProtocolException {
        try {
            return new MemoryRegion(codec.payloadLong(base + REGION_GPA_OFFSET),
                    codec.payloadLong(base + REGION_SIZE_OFFSET), codec.payloadLong(base + REGION_UADDR_OFFSET),
                    codec.payloadLong(base + REGION_MMAP_OFFSET_OFFSET), fd, fileId(fd));
        } catch (IllegalArgumentException e) {
            throw new ProtocolException("bad region: " + e.getMessage());
        }
    }

    // ------------------------------------------------------------------ building

    /** A table of exactly {@code regions} (SET_MEM_TABLE). */
    GuestMemory replaced(List<MemoryRegion> regions) throws ProtocolException {
        for (MemoryRegion r : regions) {
            checkRegion(r);
        }
        checkNoOverlap(regions);
        noteShrinkable(regions);
        try {
            return GuestMemory.map(regions, mapper);
        } catch (RuntimeException e) {
            throw new ProtocolException("mapping the memory table failed: " + e.getMessage());
        }
    }

    /**
     * The current table plus {@code r} (ADD_MEM_REG), or null when {@code r} is already in it: QEMU
     * (7.2 and others before it) sends the memory messages once per vhost_dev, i.e. once per queue
     * pair on the same socket, so the second pair re-adds every region the first one added. The
     * same region again is a no-op, not an overlap.
     */
    private GuestMemory added(MemoryRegion r) throws ProtocolException {
        checkRegion(r);
        GuestMemory base = current != null ? current : GuestMemory.empty();
        if (indexOf(base, r, true) >= 0) {
            LOG.log(Level.DEBUG, "{0}: region gpa=0x{1} size=0x{2} already in the table (duplicate ADD_MEM_REG)",
                    name, Long.toHexString(r.guestPhysAddr()), Long.toHexString(r.size()));
            return null;
        }
        if (base.regionCount() >= GuestMemory.MAX_REGIONS) {
            throw new ProtocolException("all " + GuestMemory.MAX_REGIONS + " memory slots in use");
        }
        List<MemoryRegion> all = new ArrayList<>(base.regions());
        all.add(r);
        checkNoOverlap(all);
        noteShrinkable(List.of(r));
        try {
            GuestMemory next = base.withAdded(r, mapper);
            LOG.log(Level.DEBUG, "{0}: added region gpa=0x{1} size=0x{2} ({3} regions)", name,
                    Long.toHexString(r.guestPhysAddr()), Long.toHexString(r.size()), next.regionCount());
            return next;
        } catch (RuntimeException e) {
            throw new ProtocolException("mapping the region failed: " + e.getMessage());
        }
    }

    /**
     * The current table without {@code r} (REM_MEM_REG; its mmap offset need not match), or null
     * when no such region is in it: the counterpart of the duplicate ADD_MEM_REG — with several
     * queue pairs QEMU removes a region once per pair; the first removal took it.
     */
    private GuestMemory removed(MemoryRegion r) {
        if (current == null || indexOf(current, r, false) < 0) {
            LOG.log(Level.DEBUG, "{0}: no region gpa=0x{1} uaddr=0x{2} size=0x{3} (duplicate REM_MEM_REG): nothing to do",
                    name, Long.toHexString(r.guestPhysAddr()), Long.toHexString(r.userAddr()), Long.toHexString(r.size()));
            return null;
        }
        GuestMemory next = current.withRemoved(r.guestPhysAddr(), r.size());
        LOG.log(Level.DEBUG, "{0}: removed region gpa=0x{1} ({2} regions)", name, Long.toHexString(r.guestPhysAddr()),
                next.regionCount());
        return next;
    }

    /** {@code next} is now in use (the device took it): the old table's unshared mappings are unmapped. */
    void commit(GuestMemory next) {
        GuestMemory old = current;
        current = next;
        if (old != null) {
            old.retire(next);
        }
        JvhostEvents.memoryTable(name, next.regionCount(), next.regions().stream().mapToLong(MemoryRegion::size).sum());
    }

    /** The device refused {@code next}: its own new mappings are unmapped, the current table stays. */
    void abandon(GuestMemory next) {
        next.retire(current);
    }

    /** Unmaps the current table (after the device reset: no worker uses it any more). */
    @Override
    public void close() {
        GuestMemory old = current;
        current = null;
        if (old != null) {
            try {
                old.close();
            } catch (RuntimeException e) {
                LOG.log(Level.ERROR, name + ": unmapping guest memory failed", e);
            }
        }
    }

    /**
     * Index of the region in {@code m} that is exactly {@code r} (guest-physical address, size and
     * front-end address; with {@code matchOffset} also the mmap offset, which REM_MEM_REG need not
     * carry), or -1.
     */
    private static int indexOf(GuestMemory m, MemoryRegion r, boolean matchOffset) {
        List<MemoryRegion> all = m.regions();
        for (int i = 0; i < all.size(); i++) {
            MemoryRegion e = all.get(i);
            if (e.guestPhysAddr() == r.guestPhysAddr() && e.userAddr() == r.userAddr() && e.size() == r.size()
                    && (!matchOffset || e.mmapOffset() == r.mmapOffset())) {
                return i;
            }
        }
        return -1;
    }

    private static void checkRegion(MemoryRegion r) throws ProtocolException {
        String what = "region gpa=0x" + Long.toHexString(r.guestPhysAddr()) + " size=0x" + Long.toHexString(r.size());
        if (r.size() <= 0) {
            throw new ProtocolException(what + ": size must be positive");
        }
        if (Long.compareUnsigned(r.guestPhysAddr() + r.size() - 1, r.guestPhysAddr()) < 0) {
            throw new ProtocolException(what + ": guest address range wraps");
        }
        if (Long.compareUnsigned(r.userAddr() + r.size() - 1, r.userAddr()) < 0) {
            throw new ProtocolException(what + ": user address range wraps");
        }
        if (r.mmapOffset() < 0 || r.mmapOffset() + r.size() < r.mmapOffset()) {
            throw new ProtocolException(what + ": mmap offset 0x" + Long.toHexString(r.mmapOffset()) + " out of range");
        }
        long fileSize = fileSize(r.fd(), what);
        if (r.mmapOffset() + r.size() > fileSize) {
            throw new ProtocolException(what + ": mmap offset 0x" + Long.toHexString(r.mmapOffset())
                    + " + size points past the end of its fd (0x" + Long.toHexString(fileSize) + " bytes)");
        }
    }

    /**
     * Size of the file behind a received fd. stat through /proc/self/fd follows the descriptor to
     * the memfd/hugetlbfs inode, so this needs no extra syscall binding. Mapping past the end of the
     * file would succeed and then SIGBUS the whole process on first touch: this check is what keeps
     * a bad front-end from killing other devices.
     */
    static long fileSize(int fd, String what) throws ProtocolException {
        try {
            BasicFileAttributes a = Files.readAttributes(Path.of("/proc/self/fd/" + fd), BasicFileAttributes.class);
            if (!a.isRegularFile()) {
                throw new ProtocolException(what + ": fd is not a mappable file");
            }
            return a.size();
        } catch (IOException e) {
            throw new ProtocolException(what + ": cannot stat its fd: " + e.getMessage());
        }
    }

    /**
     * The device and inode of the file behind a received fd (0: no fd, or not known): a restarted
     * front-end process passes another memfd even where it maps its memory at the same addresses.
     */
    static long fileId(int fd) {
        if (fd < 0) {
            return 0;
        }
        try {
            Map<String, Object> a = Files.readAttributes(Path.of("/proc/self/fd/" + fd), "unix:dev,ino");
            return ((Number) a.get("dev")).longValue() * 0x9E37_79B9_7F4A_7C15L ^ ((Number) a.get("ino")).longValue();
        } catch (IOException | RuntimeException e) {
            return 0;
        }
    }

    private static void checkNoOverlap(List<MemoryRegion> table) throws ProtocolException {
        for (int i = 0; i < table.size(); i++) {
            for (int j = i + 1; j < table.size(); j++) {
                MemoryRegion a = table.get(i);
                MemoryRegion b = table.get(j);
                if (overlaps(a.guestPhysAddr(), a.size(), b.guestPhysAddr(), b.size())) {
                    throw new ProtocolException("regions overlap in guest-physical space: 0x"
                            + Long.toHexString(a.guestPhysAddr()) + " and 0x" + Long.toHexString(b.guestPhysAddr()));
                }
                if (overlaps(a.userAddr(), a.size(), b.userAddr(), b.size())) {
                    throw new ProtocolException("regions overlap in front-end address space: 0x"
                            + Long.toHexString(a.userAddr()) + " and 0x" + Long.toHexString(b.userAddr()));
                }
            }
        }
    }

    /** Unsigned [a, a+alen) ∩ [b, b+blen) ≠ ∅ for ranges known not to wrap. */
    private static boolean overlaps(long a, long alen, long b, long blen) {
        return Long.compareUnsigned(a, b + blen - 1) <= 0 && Long.compareUnsigned(b, a + alen - 1) <= 0;
    }

    /**
     * Reports regions whose file the front-end can still shrink after we map it (no
     * {@code F_SEAL_SHRINK}: hugetlbfs files, DPDK's memory, memfds without seals; QEMU seals its memfd
     * backends). They are accepted — refusing them would refuse most real front-ends — but a shrink
     * makes our accesses fault: the queue pair that touches the missing pages stops with
     * {@code MEMORY_FAULT}, the process carries on (docs/VHOST-USER.md).
     */
    private void noteShrinkable(List<MemoryRegion> regions) {
        StringBuilder b = null;
        for (MemoryRegion r : regions) {
            int seals;
            try {
                seals = Fds.seals(r.fd());
            } catch (RuntimeException e) {
                seals = -1;
            }
            if (seals >= 0 && (seals & Fds.F_SEAL_SHRINK) != 0) {
                continue;
            }
            b = b == null ? new StringBuilder() : b.append(", ");
            b.append("gpa=0x").append(Long.toHexString(r.guestPhysAddr())).append(" size=0x")
                    .append(Long.toHexString(r.size())).append(seals < 0 ? " (file cannot be sealed)" : " (not sealed)");
        }
        if (b == null) {
            return;
        }
        Level level = shrinkableLogged ? Level.DEBUG : Level.INFO;
        shrinkableLogged = true;
        LOG.log(level, "{0}: memory the front-end could shrink under us (no F_SEAL_SHRINK): {1}; a shrink stops"
                + " the queue pair that touches it (MEMORY_FAULT), not the process", name, b);
    }
}
