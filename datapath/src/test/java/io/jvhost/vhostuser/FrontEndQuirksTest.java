package io.jvhost.vhostuser;

import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.vhostuser.VhostUserMessage.*;
import static org.junit.jupiter.api.Assertions.*;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.VhostUserClient.Rejected;
import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.UnixSocket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Message orders and habits of real front-ends (QEMU hw/virtio/vhost-user.c, DPDK virtio-user,
 * rust-vmm's vhost-user frontend) and the spec corners they rely on, each found diverging once.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class FrontEndQuirksTest {

    private static final long PROTO_BIT = 1L << VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES;

    /** DPDK virtio-user: SET_VRING_CALL for every ring before SET_FEATURES and SET_MEM_TABLE. */
    @Test
    void dpdkVirtioUserOrderCallBeforeFeaturesAndMemory() {
        try (ProtocolFixture f = new ProtocolFixture(2); VhostUserClient c = f.connect()) {
            c.setOwner();
            long offered = c.getFeatures() & ~(1L << VirtioFeatures.F_LOG_ALL);
            c.setProtocolFeatures(c.getProtocolFeatures());
            int[] calls = new int[4];
            for (int q = 0; q < 4; q++) {
                calls[q] = f.eventFd();
                c.setVringCall(q, calls[q]);
            }
            c.setFeatures(offered);
            c.setMemTable(List.of(f.mem.region()));
            for (int q = 0; q < 2; q++) {
                long[] a = f.ringAddrs(ProtocolFixture.RING);
                c.setVringNum(q, ProtocolFixture.RING);
                c.setVringBase(q, 0);
                c.setVringAddr(q, 0, a[0], a[2], a[1], 0);
                c.setVringKick(q, f.eventFd());
                c.setVringEnable(q, true);
            }
            for (int q = 0; q < 2; q++) {
                assertTrue(f.backend.isRunning(q));
                assertTrue(f.backend.enabled(q));
                assertTrue(f.backend.ring(q).callFd() >= 0, "the early call fd reaches the device");
            }
            assertNull(f.backend.fdProblem());
        }
    }

    /**
     * QEMU with two queue pairs: one vhost_dev per pair, each sending SET_OWNER, SET_VRING_CALL/ERR at
     * init, then SET_FEATURES and SET_MEM_TABLE again (identical) while the first pair's rings run;
     * KICK before CALL.
     */
    @Test
    void qemuRepeatsOwnerFeaturesAndTableWhileOtherRingsRun() {
        try (ProtocolFixture f = new ProtocolFixture(2); VhostUserClient c = f.connect()) {
            long ack = c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            for (int q = 0; q < 4; q++) {
                c.setVringCall(q, f.eventFd());
                c.setVringErr(q, f.eventFd());
            }
            for (int pair = 0; pair < 2; pair++) {
                c.setOwner();
                c.setFeatures(ack);
                c.setMemTable(List.of(f.mem.region()));
                for (int q = 2 * pair; q < 2 * pair + 2; q++) {
                    long[] a = f.ringAddrs(ProtocolFixture.RING);
                    c.setVringNum(q, ProtocolFixture.RING);
                    c.setVringBase(q, 0);
                    c.setVringAddr(q, 0, a[0], a[2], a[1], 0);
                    c.setVringKick(q, f.eventFd());
                    c.setVringCall(q, f.eventFd());
                }
            }
            for (int q = 0; q < 4; q++) {
                assertTrue(f.backend.isRunning(q), "ring " + q);
            }
            assertNull(f.backend.fdProblem());
        }
    }

    @Test
    void featuresMayNotChangeWhileRingsRunButMayAfterTheyStopped() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            long ack = c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            c.setMemTable(List.of(f.mem.region()));
            f.setupRing(c, 0, 0);
            long noEventIdx = ack & ~(1L << VirtioFeatures.RING_F_EVENT_IDX);
            assertThrows(Rejected.class, () -> c.setFeatures(noEventIdx), "a running ring keeps its layout");
            assertEquals(ack, f.backend.ackedFeatures());
            c.setFeatures(ack); // identical: fine
            c.getVringBase(0);
            c.setFeatures(noEventIdx);
            assertEquals(noEventIdx, f.backend.ackedFeatures());
        }
    }

    /** vhost-user.rst "Ring states": rings begin disabled; SET_FEATURES without PROTOCOL_FEATURES enables all. */
    @Test
    void ringsBeginDisabledAndFeaturesWithoutProtocolBitEnableThem() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            long offered = c.getFeatures() & ~(1L << VirtioFeatures.F_LOG_ALL);
            c.setOwner();
            c.setMemTable(List.of(f.mem.region()));
            f.setupRing(c, 0, 0); // a front-end that kicks before SET_FEATURES
            c.getFeatures(); // no REPLY_ACK: a round trip makes sure the session has handled everything
            assertFalse(f.backend.ring(0).enabled(), "no SET_FEATURES yet: disabled");
            c.setFeatures(0); // (the same, empty, feature set: allowed while the ring runs)
            c.getFeatures();
            assertTrue(f.backend.enabled(0), "SET_FEATURES without PROTOCOL_FEATURES enables running rings");
            c.getVringBase(0);
            c.setVringEnable(1, false);
            c.setFeatures(offered & ~PROTO_BIT);
            f.setupRing(c, 1, 0);
            c.getFeatures();
            assertTrue(f.backend.ring(1).enabled(), "... and rings that start later");
        }
    }

    @Test
    void getVringBaseOnARingThatNeverStartedAnswersItsBase() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            assertEquals(0, c.getVringBase(1));
            c.setVringBase(1, 1234);
            assertEquals(1234, c.getVringBase(1));
            f.setupRing(c, 0, 7);
            assertEquals(7, c.getVringBase(0));
            assertEquals(7, c.getVringBase(0), "a second GET_VRING_BASE on the stopped ring");
            assertFalse(f.backend.isRunning(0));
            assertNull(f.backend.fdProblem(), "no stop of a ring that was not running");
        }
    }

    /** A new table without the ring's memory pauses the ring; a covering one resumes it at the same index. */
    @Test
    void memoryTableThatDropsARunningRingPausesItUntilMemoryReturns() throws Exception {
        try (ProtocolFixture f = new ProtocolFixture(1);
             DriverMemory other = DriverMemory.memfd("other", 1 << 16, 0x2_0000_0000L);
             VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 100);
            f.backend.advance(0, 5);
            c.setMemTable(List.of(other.region()));
            assertFalse(f.backend.isRunning(0), "paused: the new table does not cover it");
            assertNull(f.backend.fdProblem(), "the device never saw a table without its running ring");
            c.setMemTable(List.of(other.region(), f.mem.region()));
            assertTrue(f.backend.isRunning(0), "resumed when memory came back");
            assertEquals(105, f.backend.ring(0).baseIndex(), "at the index where it paused");
            assertNull(f.backend.fdProblem());
        }
    }

    /** QEMU with CONFIGURE_MEM_SLOTS changes a region by REM_MEM_REG then ADD_MEM_REG. */
    @Test
    void removeThenAddOfTheRingsRegionPausesAndResumes() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            c.addMemReg(f.mem.region());
            f.setupRing(c, 0, 3);
            c.remMemReg(f.mem.region());
            assertFalse(f.backend.isRunning(0));
            c.addMemReg(f.mem.region());
            assertTrue(f.backend.isRunning(0));
            assertEquals(3, f.backend.ring(0).baseIndex());
            assertNull(f.backend.fdProblem());
        }
    }

    /**
     * QEMU 7.2 with CONFIGURE_MEM_SLOTS and two queue pairs (found booting a Linux guest with mq=on):
     * each pair's vhost_dev sends ADD_MEM_REG for every region, so the second pair re-adds what the
     * first added, and later removes what the first already removed. Before the fix the duplicate was
     * refused as an overlap and QEMU fell back to userspace virtio ("vhost_set_mem_table failed").
     */
    @Test
    void qemuMultiQueueSendsEveryRegionMessageOncePerQueuePair() {
        try (ProtocolFixture f = new ProtocolFixture(2); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            List<MemoryRegion> halves = f.mem.regions(2);
            for (int pair = 0; pair < 2; pair++) {
                for (MemoryRegion r : halves) {
                    c.addMemReg(r); // REPLY_ACK: status 0 both times
                }
            }
            assertEquals(2, f.backend.memory().regionCount(), "duplicates are not added twice");
            f.setupRing(c, 0, 0);
            f.setupRing(c, 2, 0);
            assertTrue(f.backend.isRunning(0) && f.backend.isRunning(2));
            MemoryRegion second = halves.get(1);
            for (int pair = 0; pair < 2; pair++) {
                c.remMemReg(second);
            }
            assertEquals(1, f.backend.memory().regionCount());
            // a region that overlaps without being the same is still refused
            MemoryRegion first = halves.get(0);
            assertThrows(Rejected.class, () -> c.addMemReg(new MemoryRegion(first.guestPhysAddr(), first.size() / 2,
                    first.userAddr(), first.mmapOffset(), first.fd())));
            assertEquals(1, f.backend.memory().regionCount());
            assertTrue(f.backend.isRunning(0) && f.backend.isRunning(2), "rings in the kept region never paused");
            assertNull(f.backend.fdProblem());
        }
    }

    /**
     * Without LOG_SHMFD negotiated, SET_LOG_BASE (the kernel-era form: an address in the front-end's
     * own process) and SET_LOG_FD change nothing and have no reply of their own.
     */
    @Test
    void logBaseAndLogFdWithoutLogShmfdHaveNoReplyOfTheirOwn() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, VhostUserMessage.PROTOCOL_SUPPORTED & ~(1L << PROTOCOL_F_LOG_SHMFD));
            c.setMemTable(List.of(f.mem.region()));
            long offered = c.getFeatures();
            int logFd = f.eventFd();
            c.sendAck(SET_LOG_BASE, new byte[16], null); // REPLY_ACK: exactly one status 0
            c.sendAck(SET_LOG_BASE, new byte[8], null);
            c.sendAck(SET_LOG_FD, null, new int[] {logFd});
            c.replyAck(false);
            c.send(SET_LOG_BASE, 0, new byte[16], null); // no LOG_SHMFD: no reply expected
            c.send(SET_LOG_FD, 0, null, new int[] {logFd});
            assertEquals(offered, c.getFeatures(), "no stray reply came first");
        }
    }

    /** REPLY_ACK never adds a second reply, and is judged by what was negotiated before the message. */
    @Test
    void replyAckNeverDoublesARepliedRequest() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            // NEED_REPLY before REPLY_ACK is negotiated: not acknowledged
            c.send(SET_OWNER, FLAG_NEED_REPLY, null, null);
            c.send(SET_PROTOCOL_FEATURES, FLAG_NEED_REPLY,
                    VhostUserClient.u64(1L << PROTOCOL_F_REPLY_ACK | 1L << PROTOCOL_F_MQ), null);
            c.replyAck(true);
            // the SET_PROTOCOL_FEATURES that turned REPLY_ACK on got no ack: the next reply is GET_FEATURES'
            c.send(GET_FEATURES, FLAG_NEED_REPLY, null, null);
            VhostUserClient.Reply r = c.readReply();
            assertEquals(GET_FEATURES, r.request());
            c.send(GET_QUEUE_NUM, FLAG_NEED_REPLY, null, null);
            assertEquals(GET_QUEUE_NUM, c.readReply().request(), "one reply, no extra ack in between");
            c.send(GET_VRING_BASE, FLAG_NEED_REPLY, VhostUserClient.state(0, 0), null);
            assertEquals(GET_VRING_BASE, c.readReply().request());
            c.setOwner(); // now acknowledged
            assertEquals(1, c.getQueueNum());
        }
    }

    @Test
    void resetOwnerInTheMiddleOfSetupThenSetupCompletes() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            c.setVringNum(0, ProtocolFixture.RING);
            c.resetOwner();
            f.setupRing(c, 0, 0);
            c.setVringEnable(0, true);
            assertTrue(f.backend.isRunning(0));
            assertTrue(f.backend.enabled(0));
        }
    }

    @Test
    void disconnectInTheMiddleOfSetupResetsAndTheNextSessionStartsClean() throws Exception {
        try (ProtocolFixture f = new ProtocolFixture(1)) {
            try (VhostUserClient c = f.connectReady()) {
                c.setVringNum(0, ProtocolFixture.RING);
                c.setVringCall(0, f.eventFd());
            }
            f.backend.awaitResets(1, 5000);
            try (VhostUserClient c = f.connect()) {
                c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
                assertEquals(0, f.backend.runningCount());
                assertEquals(0, c.getVringBase(0), "nothing of the old session's ring state survived");
            }
        }
    }

    @Test
    void refusedCallFdLeavesTheOldOneInPlace() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 0);
            int before = f.backend.callFd(0);
            java.util.Set<Integer> fds = ProtocolFixture.openEventFds();
            int mine = f.eventFd();
            f.backend.refuseCall = true;
            assertThrows(Rejected.class, () -> c.setVringCall(0, mine));
            f.backend.refuseCall = false;
            assertEquals(before, f.backend.callFd(0));
            assertTrue(java.nio.file.Files.exists(java.nio.file.Path.of("/proc/self/fd/" + before)));
            // The back-end closes the refused fd (its copy, received over the socket) right after its
            // reply: wait until the only new eventfd in the process is the test's own.
            java.util.function.Supplier<java.util.Set<Integer>> added = () -> {
                java.util.Set<Integer> now = ProtocolFixture.openEventFds();
                now.removeAll(fds);
                return now;
            };
            ProtocolFixture.awaitTrue(() -> added.get().equals(java.util.Set.of(mine)), 10_000,
                    "only the test's new eventfd " + mine + " more, found " + added.get());
            assertNull(f.backend.fdProblem());
        }
    }

    /** A front-end that never reads its replies cannot wedge the control thread. */
    @Test
    void frontEndThatStopsReadingEndsItsSession() {
        try (ProtocolFixture f = new ProtocolFixture(1); Arena arena = Arena.ofConfined()) {
            int fd = UnixSocket.connect(f.path);
            try {
                Fds.setNonBlocking(fd, true);
                MemorySegment msg = arena.allocate(HEADER_SIZE);
                msg.set(U32, REQUEST_OFFSET, GET_FEATURES);
                msg.set(U32, FLAGS_OFFSET, VERSION);
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                boolean gone = false;
                while (!gone && System.nanoTime() - end < 0) {
                    try {
                        if (UnixSocket.send(fd, msg, HEADER_SIZE, null) == Fds.WOULD_BLOCK) {
                            Thread.sleep(5);
                        }
                    } catch (RuntimeException e) {
                        gone = true; // EPIPE / ECONNRESET: the back-end hung up
                    } catch (InterruptedException e) {
                        throw new AssertionError(e);
                    }
                    gone |= f.server.sessionsEnded() == 1;
                }
                assertTrue(gone, "the session ended instead of blocking in send");
                ProtocolFixture.awaitTrue(() -> f.server.sessionsEnded() == 1, 5000, "session end");
                assertTrue(f.server.running());
            } finally {
                Fds.closeQuietly(fd);
            }
        }
    }
}
