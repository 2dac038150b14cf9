package io.jvhost.vhostuser;

import static io.jvhost.vhostuser.VhostUserMessage.*;
import static org.junit.jupiter.api.Assertions.*;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.VhostUserClient.ConnectionLost;
import io.jvhost.driver.VhostUserClient.Rejected;
import io.jvhost.memory.DirtyLog;
import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import io.jvhost.nativ.NativeException;
import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * The migration side of the protocol as QEMU drives it (SET_LOG_BASE with LOG_SHMFD, LOG_ALL on and
 * off under running rings, VHOST_VRING_F_LOG, SET_LOG_FD, SET/GET_STATUS) and what a hostile
 * front-end can try: a log smaller than guest memory, an offset past its fd, a log that could shrink,
 * a ring log address the log does not cover, a memory table beyond the log, LOG_ALL with no log —
 * each a clear refusal (or, for LOG_ALL, rings that wait), never a crash, never a mapping left behind.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MigrationProtocolTest {
    private static final long LOG_ALL = 1L << VirtioFeatures.F_LOG_ALL;
    private static final String LOG_NAME = "jvlog-" + Long.toHexString(ThreadLocalRandom.current().nextLong());

    /** A memfd of {@code size} bytes named so its mappings can be found in /proc/self/maps; sealed as QEMU seals its log. */
    private static int logFd(long size, boolean sealed) {
        int fd = Mman.memfdCreate(LOG_NAME, Mman.MFD_ALLOW_SEALING);
        Mman.ftruncate(fd, size);
        if (sealed) {
            Fds.addSeals(fd, Fds.F_SEAL_SHRINK | Fds.F_SEAL_GROW | Fds.F_SEAL_SEAL);
        }
        return fd;
    }

    /** The log size QEMU computes (vhost_get_log_size) for the fixture's RAM: one u64 per 64 pages up to its last byte. */
    private static final long NEED = ((DriverMemory.DEFAULT_GPA_BASE + ProtocolFixture.RAM - 1) / (DirtyLog.PAGE_SIZE * 64) + 1) * 8;

    private static long logSize(ProtocolFixture f) {
        assertEquals(DriverMemory.DEFAULT_GPA_BASE, f.mem.gpaBase());
        return NEED;
    }

    private static long logMappings() {
        try {
            return Files.readAllLines(Path.of("/proc/self/maps")).stream().filter(l -> l.contains(LOG_NAME)).count();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void qemusMigrationSequenceSwitchesLoggingUnderRunningRings() throws Exception {
        int fd1 = logFd(4096 + NEED, true);
        int fd2 = -1;
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long ack = f.backend.ackedFeatures();
            assertEquals(0, ack & LOG_ALL, "not logging before the migration");
            f.setupRing(c, 0, 0);
            f.setupRing(c, 1, 0);
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            c.setVringAddr(0, 0, a[0], a[2], a[1], 0); // ring 0 restarts on its own addresses
            long ring0Used = f.backend.ring(0).usedAddr();

            c.setLogBase(fd1, logSize(f), 4096, true); // replied to, as QEMU waits for
            DirtyLog log1 = f.backend.dirtyLog();
            assertNotNull(log1);
            assertFalse(f.backend.logAll(), "the log alone does not switch logging on");
            assertTrue(log1.covers(f.mem.gpaBase(), ProtocolFixture.RAM));
            assertEquals(1, logMappings());

            c.setFeatures(ack | LOG_ALL); // QEMU: vhost_dev_set_log(true) ...
            assertTrue(f.backend.logAll());
            assertTrue(f.backend.isRunning(0) && f.backend.isRunning(1), "rings keep running");
            assertEquals(ack, f.backend.ackedFeatures(), "the device's virtio features are unchanged");
            long usedGpa = f.mem.gpaBase() + (ring0Used - f.mem.userAddress(f.mem.gpaBase()));
            c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], usedGpa); // ... then each ring with its log address
            assertTrue(f.backend.ring(0).setup().logUsed());
            assertEquals(usedGpa, f.backend.ring(0).setup().logGuestAddr());

            fd2 = logFd(2 * logSize(f), true); // QEMU resizing the log (memory grew): the new one replaces it
            c.setLogBase(fd2, 2 * logSize(f), 0, true);
            assertNotSame(log1, f.backend.dirtyLog());
            assertTrue(f.backend.logAll());
            assertEquals(1, logMappings(), "the old log was unmapped once the device took the new one");

            int evfd = f.eventFd();
            c.setLogFd(evfd); // accepted (REPLY_ACK 0)

            c.setFeatures(ack); // end of the migration
            assertFalse(f.backend.logAll());
            c.setVringAddr(0, 0, a[0], a[2], a[1], 0);
            assertFalse(f.backend.ring(0).setup().logUsed());
            assertTrue(f.backend.isRunning(0) && f.backend.isRunning(1));
            assertNull(f.backend.fdProblem());
        } finally {
            Fds.closeQuietly(fd1);
            Fds.closeQuietly(fd2);
        }
        assertEquals(0, logMappings(), "the session's end unmapped the log");
    }

    @Test
    void logAllWithoutALogHoldsTheRingsUntilOneArrives() {
        int fd = logFd(NEED, true);
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long ack = f.backend.ackedFeatures();
            f.setupRing(c, 0, 0);
            c.setFeatures(ack | LOG_ALL); // QEMU starting a device mid-migration sends SET_LOG_BASE last
            assertTrue(f.backend.logAll());
            assertNull(f.backend.dirtyLog());
            assertTrue(f.backend.events().contains("log held"), f.backend.events().toString());
            c.setLogBase(fd, logSize(f), 0, true);
            assertNotNull(f.backend.dirtyLog());
            assertTrue(f.backend.events().contains("log on"));
            assertTrue(f.backend.isRunning(0));
        } finally {
            Fds.closeQuietly(fd);
        }
    }

    /** Each refused log ends the session (SET_LOG_BASE has a reply of its own: no REPLY_ACK status to refuse with). */
    @Test
    void badLogsAreRefusedAndNothingStaysMapped() {
        record Bad(String why, long fileSize, boolean sealed, long size, long offset) {
        }
        {
            long need = NEED;
            List<Bad> bads = List.of(
                    new Bad("smaller than the guest memory it must cover", need, true, need - 8, 0),
                    new Bad("offset past the end of the fd", need, true, need, need + 4096),
                    new Bad("offset + size past the end of the fd", need, true, need, 8),
                    new Bad("not sealed against shrinking", need, false, need, 0),
                    new Bad("offset not 8-byte aligned", need + 8, true, need, 4),
                    new Bad("size 0", need, true, 0, 0),
                    new Bad("offset + size wraps", need, true, need, -8));
            for (Bad b : bads) {
                int fd = logFd(b.fileSize(), b.sealed());
                try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
                    assertThrows(ConnectionLost.class, () -> c.setLogBase(fd, b.size(), b.offset(), true), b.why());
                    assertNull(f.backend.dirtyLog(), b.why());
                    assertTrue(c.awaitClosed(2000), b.why());
                } finally {
                    Fds.closeQuietly(fd);
                }
                assertEquals(0, logMappings(), b.why());
            }
            // and without an fd at all
            try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
                byte[] p = new byte[LOG_SIZE];
                c.send(SET_LOG_BASE, 0, p, null);
                assertTrue(c.awaitClosed(2000), "no fd");
                assertNull(f.backend.dirtyLog());
            }
        }
    }

    /** The premise of mapping only sealed logs: the front-end cannot shrink such a file under the device. */
    @Test
    void aSealedLogCannotShrink() {
        int fd = logFd(65536, true);
        try {
            NativeException e = assertThrows(NativeException.class, () -> Mman.ftruncate(fd, 4096));
            assertEquals(io.jvhost.nativ.Errno.EPERM, e.errno());
        } finally {
            Fds.closeQuietly(fd);
        }
    }

    @Test
    void ringLogAddressesMustLieInsideTheLog() {
        int fd = logFd(NEED, true);
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long ack = f.backend.ackedFeatures();
            f.setupRing(c, 0, 0);
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            c.setLogBase(fd, logSize(f), 0, true);
            c.setFeatures(ack | LOG_ALL);
            long pastTheLog = f.backend.dirtyLog().pages() * DirtyLog.PAGE_SIZE;
            assertThrows(Rejected.class, () -> c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], pastTheLog),
                    "ring log address beyond the log (and beyond guest memory)");
            assertThrows(Rejected.class, () -> c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], pastTheLog - 1024),
                    "the ring's last byte beyond the log");
            assertThrows(Rejected.class, () -> c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], -4096L), "wraps");
            assertTrue(f.backend.isRunning(0), "a refused address changes nothing");
            // The spec allows an address outside the memory table as long as the log covers it.
            c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], 0x10000);
            assertEquals(0x10000, f.backend.ring(0).setup().logGuestAddr());
        } finally {
            Fds.closeQuietly(fd);
        }
    }

    @Test
    void aLogNotCoveringALoggingRingIsRefused() {
        int small = logFd(NEED, true);
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            c.setVringNum(0, ProtocolFixture.RING);
            c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], 1L << 40); // no log yet: checked when one comes
            c.setVringKick(0, f.eventFd());
            assertTrue(f.backend.isRunning(0));
            assertThrows(ConnectionLost.class, () -> c.setLogBase(small, logSize(f), 0, true));
            assertNull(f.backend.dirtyLog());
        } finally {
            Fds.closeQuietly(small);
        }
        assertEquals(0, logMappings());
    }

    @Test
    void aMemoryTableBeyondTheLogIsRefusedWhileLogging() {
        int fd = logFd(NEED, true);
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long ack = f.backend.ackedFeatures();
            c.setLogBase(fd, logSize(f), 0, true);
            c.setFeatures(ack | LOG_ALL);
            MemoryRegion r = f.mem.region();
            MemoryRegion far = new MemoryRegion(r.guestPhysAddr() + (64L << 30), r.size(), r.userAddr() + (64L << 30),
                    r.mmapOffset(), r.fd());
            Rejected e = assertThrows(Rejected.class, () -> c.setMemTable(List.of(far)));
            assertEquals(SET_MEM_TABLE, e.request());
            assertEquals(r.guestPhysAddr(), f.backend.memory().regions().get(0).guestPhysAddr(), "old table kept");
            c.setFeatures(ack); // not logging: any table
            c.setMemTable(List.of(far));
        } finally {
            Fds.closeQuietly(fd);
        }
    }

    @Test
    void otherFeatureChangesAreStillRefusedUnderRunningRings() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long ack = f.backend.ackedFeatures();
            f.setupRing(c, 0, 0);
            long noEventIdx = ack & ~(1L << VirtioFeatures.RING_F_EVENT_IDX);
            assertThrows(Rejected.class, () -> c.setFeatures(noEventIdx | LOG_ALL));
            assertFalse(f.backend.logAll(), "refused as a whole");
        }
    }

    @Test
    void statusIsRecordedAndReadBack() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            assertEquals(0, c.getStatus());
            c.setStatus(0x0f); // ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK
            assertEquals(0x0f, c.getStatus());
            assertThrows(Rejected.class, () -> c.setStatus(0x100));
            assertEquals(0x0f, c.getStatus());
            c.resetDevice();
            assertEquals(0, c.getStatus());
        }
    }

    @Test
    void switchedOffLoggingIsNotOffered() {
        try (ProtocolFixture f = new ProtocolFixture(1, FeatureSet.all().without("log-all", "proto-log-shmfd", "proto-status"));
             VhostUserClient c = f.connect()) {
            assertEquals(0, c.getFeatures() & LOG_ALL);
            long proto = c.getProtocolFeatures();
            assertEquals(0, proto & (1L << PROTOCOL_F_LOG_SHMFD | 1L << PROTOCOL_F_STATUS));
        }
    }
}
