package io.jvhost.memory;

/**
 * One guest memory region exactly as the front-end describes it in vhost-user
 * {@code SET_MEM_TABLE} / {@code ADD_MEM_REG} ({@code struct vhost_user_memory_region} plus the
 * file descriptor that came with it).
 *
 * <p>All addresses are unsigned 64-bit values held in {@code long}s. {@link #fd()} is -1 for a
 * region that is already mapped in this process (tests, in-process driver).
 *
 * @param guestPhysAddr guest physical address of the first byte
 * @param size          length in bytes, &gt; 0
 * @param userAddr      the front-end's (QEMU's) virtual address of the first byte; ring addresses
 *                      in {@code SET_VRING_ADDR} are in this address space
 * @param mmapOffset    offset into {@code fd} at which the region starts
 * @param fd            the file descriptor to map, or -1
 * @param fileId        the identity of the file behind {@code fd} (its device and inode), 0 when
 *                      not known: another front-end process's memory is another file, wherever it
 *                      maps it ({@link io.jvhost.virtq.RingJournal} tells rings apart by it)
 */
public record MemoryRegion(long guestPhysAddr, long size, long userAddr, long mmapOffset, int fd, long fileId) {

    /** A region whose file identity is not known (tests, the in-process driver). */
    public MemoryRegion(long guestPhysAddr, long size, long userAddr, long mmapOffset, int fd) {
        this(guestPhysAddr, size, userAddr, mmapOffset, fd, 0);
    }

    /**
     * Validates the region's own arithmetic (a hostile front-end could send anything).
     *
     * @throws IllegalArgumentException when size is 0 or an end address wraps past 2^64
     */
    public MemoryRegion {
        if (size == 0) {
            throw new IllegalArgumentException("memory region of size 0");
        }
        if (Long.compareUnsigned(guestPhysAddr + size - 1, guestPhysAddr) < 0) {
            throw new IllegalArgumentException("guest physical range overflows: gpa=0x"
                    + Long.toHexString(guestPhysAddr) + " size=0x" + Long.toUnsignedString(size, 16));
        }
        if (Long.compareUnsigned(userAddr + size - 1, userAddr) < 0) {
            throw new IllegalArgumentException("user address range overflows: uva=0x"
                    + Long.toHexString(userAddr) + " size=0x" + Long.toUnsignedString(size, 16));
        }
        if (mmapOffset < 0 || size < 0 || mmapOffset + size < 0) {
            throw new IllegalArgumentException("mmap offset/size not mappable: offset=" + mmapOffset
                    + " size=" + Long.toUnsignedString(size));
        }
    }

    /** Unsigned exclusive end of the guest-physical range (may be 0 when the region ends at 2^64). */
    public long guestPhysEnd() {
        return guestPhysAddr + size;
    }

    @Override
    public String toString() {
        return "MemoryRegion[gpa=0x" + Long.toHexString(guestPhysAddr) + " size=0x" + Long.toHexString(size)
                + " uva=0x" + Long.toHexString(userAddr) + " off=0x" + Long.toHexString(mmapOffset)
                + " fd=" + fd + "]";
    }
}
