package io.jvhost.vhostuser;

import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.GuestMemory;
import io.jvhost.nativ.Fds;

import java.lang.System.Logger.Level;

/**
 * A session's dirty-page log for live migration (SET_LOG_BASE with LOG_SHMFD) and its log
 * eventfd (SET_LOG_FD). Validates a log before mapping it and swaps logs the way memory tables are
 * swapped: a new log is mapped beside the current one ({@link #mapped}), handed to the device
 * (every worker acknowledges it), then {@link #commit}ted, which unmaps the old one — or
 * {@link #abandon}ed when the device refused it.
 *
 * <h2>Why a log must be sealed against shrinking</h2>
 * The device sets bits with an atomic OR, a VarHandle atomic access; a fault inside one (SIGBUS:
 * the front-end truncated the file under our mapping) aborts JDK 25's JVM instead of raising an
 * exception (docs/VHOST-USER.md, "Hostile front-end: shrunk memory"). Guest memory is reached
 * with plain accesses and survives a shrink; the log cannot be. So a log fd must carry
 * {@code F_SEAL_SHRINK} — then its size can never go down, and the size checked here stays true
 * for as long as the mapping lives. QEMU allocates its log with
 * {@code qemu_memfd_alloc("vhost-log", ..., F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)} (hw/virtio/
 * vhost.c, vhost_log_alloc), so this costs QEMU nothing; a log without the seal is refused with a
 * message saying so.
 *
 * <p>Threading: the session's control thread.
 */
final class DirtyLogs implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(DirtyLogs.class.getName());

    private final String name;
    /** The log the device uses (or will use once LOG_ALL is on), or null. */
    private DirtyLog current;
    /** SET_LOG_FD's eventfd (kept, not signalled: the front-end reads the log at its sync), or -1. */
    private int logFd = -1;

    DirtyLogs(String name) {
        this.name = name;
    }

    DirtyLog current() {
        return current;
    }

    /**
     * Validates and maps {@code size} bytes of {@code fd} at {@code offset} (SET_LOG_BASE). The
     * log must cover {@code memory} (when there is a table) — QEMU sends a log sized for the
     * regions it is about to hand over before a larger table, and shrinks it only after a smaller one.
     */
    DirtyLog mapped(int fd, long size, long offset, GuestMemory memory) throws ProtocolException {
        String what = "log fd size=0x" + Long.toHexString(size) + " offset=0x" + Long.toHexString(offset);
        if (size <= 0) {
            throw new ProtocolException(what + ": size must be positive");
        }
        if (offset < 0 || offset + size < offset) {
            throw new ProtocolException(what + ": offset + size wraps");
        }
        if (offset % Long.BYTES != 0) {
            throw new ProtocolException(what + ": offset not 8-byte aligned (the log is updated as 64-bit words)");
        }
        if (size < Long.BYTES) {
            throw new ProtocolException(what + ": smaller than one 64-bit word");
        }
        long fileSize = MemoryTables.fileSize(fd, what);
        if (offset + size > fileSize) {
            throw new ProtocolException(what + ": offset + size points past the end of its fd (0x"
                    + Long.toHexString(fileSize) + " bytes)");
        }
        int seals;
        try {
            seals = Fds.seals(fd);
        } catch (RuntimeException e) {
            seals = -1;
        }
        if (seals < 0 || (seals & Fds.F_SEAL_SHRINK) == 0) {
            throw new ProtocolException(what + ": the log fd is not sealed against shrinking (F_SEAL_SHRINK"
                    + (seals < 0 ? "; the file cannot be sealed" : "") + "): a log truncated under the device's"
                    + " atomic updates would abort the process, so jvhost only maps sealed logs (QEMU seals its memfd log)");
        }
        long pages = (size & -Long.BYTES) * Byte.SIZE;
        if (memory != null && memory.regionCount() > 0 && Long.compareUnsigned(memory.highestGpa() >>> DirtyLog.PAGE_SHIFT,
                pages) >= 0) {
            throw new ProtocolException(what + ": covers guest-physical addresses below 0x"
                    + Long.toHexString(pages << DirtyLog.PAGE_SHIFT) + " but guest memory reaches 0x"
                    + Long.toHexString(memory.highestGpa()) + " (log smaller than the memory it must cover)");
        }
        try {
            return DirtyLog.map(fd, offset, size);
        } catch (RuntimeException e) {
            throw new ProtocolException(what + ": mapping the log failed: " + e.getMessage());
        }
    }

    /**
     * Null when {@code log} covers {@code memory}'s highest address (or there is no table), else
     * why not: while LOG_ALL is on, a memory table the log does not cover is refused.
     */
    static String uncovered(DirtyLog log, GuestMemory memory) {
        if (log == null || memory == null || memory.regionCount() == 0
                || log.covers(memory.highestGpa(), 1)) {
            return null;
        }
        return "the dirty log covers " + log.pages() + " pages but guest memory reaches 0x"
                + Long.toHexString(memory.highestGpa());
    }

    /** {@code next} is in use by the device: the previous log is unmapped. */
    void commit(DirtyLog next) {
        DirtyLog old = current;
        current = next;
        if (old != null && old != next) {
            unmap(old);
        }
        LOG.log(Level.DEBUG, "{0}: dirty log {1}", name, next);
    }

    /** The device refused {@code next}: it is unmapped, the current log stays. */
    void abandon(DirtyLog next) {
        unmap(next);
    }

    /** SET_LOG_FD: keeps {@code fd} (owned from now on), closing the previous one. */
    void setLogFd(int fd) {
        Fds.closeQuietly(logFd);
        logFd = fd;
    }

    int logFd() {
        return logFd;
    }

    private void unmap(DirtyLog log) {
        long outside = log.outsideMarks();
        if (outside > 0) {
            // The session keeps the log covering guest memory and every logging ring: a mark that
            // still fell outside means a page was written and not logged.
            LOG.log(Level.WARNING, "{0}: {1} dirty-log marks fell outside the log or guest memory: those writes"
                    + " were not logged", name, outside);
        }
        try {
            log.close();
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": unmapping a dirty log failed", e);
        }
    }

    /** Unmaps the log and closes the log fd (after the device reset: no worker uses them). */
    @Override
    public void close() {
        DirtyLog old = current;
        current = null;
        if (old != null) {
            unmap(old);
        }
        Fds.closeQuietly(logFd);
        logFd = -1;
    }
}
