package io.jvhost.vhostuser;

import io.jvhost.net.VirtioNetConfig;
import io.jvhost.virtio.VirtioFeatures;
import static io.jvhost.vhostuser.VhostUserMessage.*;
import static org.junit.jupiter.api.Assertions.*;

import io.jvhost.driver.VhostUserClient;
import io.jvhost.driver.VhostUserClient.Rejected;
import io.jvhost.memory.MemoryRegion;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The vhost-user protocol suite: VhostUserClient over a real unix socket against the server and a recording device. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SessionProtocolTest {

    private static final long PROTO_BIT = 1L << VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES;
    /** LOG_ALL is offered but acknowledged only while migrating: "everything" below means everything else. */
    private static final long LOG_ALL_BIT = 1L << VirtioFeatures.F_LOG_ALL;

    @Test
    void negotiatesFeaturesAndProtocolFeatures() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            long offered = c.getFeatures();
            assertEquals(VirtioFeatures.SUPPORTED | PROTO_BIT, offered);
            assertTrue(VirtioFeatures.has(offered, VirtioFeatures.F_VERSION_1));
            assertFalse(VirtioFeatures.has(offered, VirtioFeatures.NET_F_CTRL_VQ), "no control queue is offered");
            assertTrue(VirtioFeatures.has(offered, VirtioFeatures.F_LOG_ALL), "dirty logging is offered");
            long proto = c.getProtocolFeatures();
            assertEquals(PROTOCOL_SUPPORTED, proto);
            assertNotEquals(0, proto & (1L << PROTOCOL_F_LOG_SHMFD), "with LOG_SHMFD (the log comes as an fd)");
            assertNotEquals(0, proto & (1L << PROTOCOL_F_STATUS));
            c.setProtocolFeatures(proto);
            c.setOwner();
            offered &= ~LOG_ALL_BIT;
            c.setFeatures(offered);
            assertEquals(offered, f.backend.ackedFeatures());
            assertEquals(1, c.getQueueNum());
            assertEquals(Session.MAX_MEM_SLOTS, c.getMaxMemSlots());
        }
    }

    @Test
    void switchedOffFeaturesAreNotOfferedAndCannotBeAcked() {
        FeatureSet fs = FeatureSet.all().without("csum,mq,guest-tso4", "proto-mtu");
        try (ProtocolFixture f = new ProtocolFixture(1, fs); VhostUserClient c = f.connect()) {
            long offered = c.getFeatures() & ~LOG_ALL_BIT;
            assertFalse(VirtioFeatures.has(offered, VirtioFeatures.NET_F_CSUM));
            assertFalse(VirtioFeatures.has(offered, VirtioFeatures.NET_F_MQ));
            assertFalse(VirtioFeatures.has(offered, VirtioFeatures.NET_F_GUEST_TSO4));
            assertTrue(VirtioFeatures.has(offered, VirtioFeatures.NET_F_HOST_TSO4));
            long proto = c.getProtocolFeatures();
            assertEquals(0, proto & (1L << PROTOCOL_F_MTU));
            c.setProtocolFeatures(proto);
            Rejected r = assertThrows(Rejected.class, () -> c.setFeatures(offered | 1L << VirtioFeatures.NET_F_CSUM));
            assertEquals(SET_FEATURES, r.request());
            assertEquals(0, f.backend.ackedFeatures(), "a rejected SET_FEATURES is not applied");
            assertThrows(Rejected.class, () -> c.netSetMtu(1400), "NET_SET_MTU needs the MTU protocol feature");
            c.setFeatures(offered);
            assertEquals(offered, f.backend.ackedFeatures());
        }
        assertThrows(IllegalArgumentException.class, () -> FeatureSet.all().without("no-such-feature"));
    }

    @Test
    void ringsStartDisabledWithProtocolFeaturesAndEnableOnRequest() throws Exception {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 0);
            f.setupRing(c, 1, 0);
            assertTrue(f.backend.isRunning(0));
            assertTrue(f.backend.isRunning(1));
            assertFalse(f.backend.ring(0).enabled(), "with PROTOCOL_FEATURES a ring starts disabled");
            assertFalse(f.backend.ring(0).polled());
            c.setVringEnable(0, true);
            c.setVringEnable(1, true);
            assertTrue(f.backend.enabled(0));
            assertTrue(f.backend.enabled(1));
            c.setVringEnable(1, false);
            assertFalse(f.backend.enabled(1));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_ENABLE, VhostUserClient.state(0, 2), null));
            assertNull(f.backend.fdProblem());
        }
    }

    @Test
    void enableBeforeStartIsRememberedForTheStart() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            c.setVringEnable(0, true);
            f.setupRing(c, 0, 0);
            assertTrue(f.backend.ring(0).enabled());
        }
    }

    @Test
    void withoutProtocolFeaturesRingsStartEnabled() {
        FeatureSet fs = FeatureSet.all().without("protocol-features");
        try (ProtocolFixture f = new ProtocolFixture(1, fs); VhostUserClient c = f.connect()) {
            long offered = c.getFeatures();
            assertFalse(VirtioFeatures.has(offered, VirtioFeatures.VHOST_USER_F_PROTOCOL_FEATURES));
            c.setOwner();
            c.setFeatures(offered);
            c.setMemTable(List.of(f.mem.region()));
            f.setupRing(c, 0, 0);
            assertEquals(0, c.getFeatures() & PROTO_BIT); // barrier: everything before is handled
            assertTrue(f.backend.ring(0).enabled());
            // GET_PROTOCOL_FEATURES is illegal when the bit was not offered: no REPLY_ACK, so the session ends
            c.send(GET_PROTOCOL_FEATURES, 0, null, null);
            assertTrue(c.awaitClosed(2000));
        }
    }

    @Test
    void getVringBaseStopsAndTheNextStartResumesThere() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 1, 65530);
            assertEquals(65530, f.backend.ring(1).baseIndex());
            f.backend.advance(1, 10); // the device consumed 10 chains: wraps past 65535
            assertEquals((65530 + 10) & 0xffff, c.getVringBase(1));
            assertFalse(f.backend.isRunning(1));
            // stopped: a second GET_VRING_BASE answers the same index without touching the device
            assertEquals(4, c.getVringBase(1));
            // restart needs a new kick; it starts from the index the stop answered
            c.setVringKick(1, f.eventFd());
            assertTrue(f.backend.isRunning(1));
            assertEquals(4, f.backend.ring(1).baseIndex());
            // SET_VRING_BASE / NUM on a running ring are refused; after a stop they apply
            assertThrows(Rejected.class, () -> c.setVringBase(1, 0));
            assertThrows(Rejected.class, () -> c.setVringNum(1, 128));
            assertEquals(4, c.getVringBase(1));
            c.setVringBase(1, 100);
            c.setVringKick(1, -1);
            assertEquals(100, f.backend.ring(1).baseIndex());
            assertTrue(f.backend.ring(1).polled(), "NOFD kick means a polled ring");
            assertNull(f.backend.fdProblem());
        }
    }

    @Test
    void callAndErrFdsAreReplacedOnRunningRings() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 0);
            c.setVringCall(0, f.eventFd());
            c.setVringCall(0, -1);
            c.setVringErr(0, f.eventFd());
            c.setVringErr(0, -1);
            List<String> ev = f.backend.events();
            assertTrue(ev.contains("call 0"), ev.toString());
            assertTrue(ev.contains("err 0"), ev.toString());
            assertNull(f.backend.fdProblem());
            // the NOFD flag with an fd attached, or no flag and no fd: wrong fd count
            int efd = f.eventFd();
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_CALL, VhostUserClient.u64(VRING_NOFD_MASK), new int[] {efd}));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_KICK, VhostUserClient.u64(0), null));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_KICK, VhostUserClient.u64(0x200), new int[] {efd}), "unknown bits");
        }
    }

    @Test
    void setVringAddrOnARunningRingRestartsItAtTheSameIndex() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 7);
            f.backend.advance(0, 3);
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            c.setVringAddr(0, 0, a[0], a[2], a[1], 0);
            StartedRing r = f.backend.ring(0);
            assertEquals(a[0], r.descAddr());
            assertEquals(a[1], r.availAddr());
            assertEquals(a[2], r.usedAddr());
            assertEquals(10, r.baseIndex());
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 4})
    void multiQueue(int pairs) {
        try (ProtocolFixture f = new ProtocolFixture(pairs); VhostUserClient c = f.connectReady()) {
            assertEquals(pairs, c.getQueueNum());
            assertEquals(pairs, c.getNetConfig().maxQueuePairs());
            for (int q = 0; q < 2 * pairs; q++) {
                f.setupRing(c, q, q * 100);
                c.setVringEnable(q, true);
            }
            for (int q = 0; q < 2 * pairs; q++) {
                assertTrue(f.backend.isRunning(q));
                assertTrue(f.backend.enabled(q));
                assertEquals(q * 100, f.backend.ring(q).baseIndex());
            }
            // one past the last vring, and far out, are refused and nothing changes
            assertThrows(Rejected.class, () -> c.setVringNum(2 * pairs, 256));
            assertThrows(Rejected.class, () -> c.setVringEnable(255, true));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_ENABLE, VhostUserClient.state(-1, 1), null));
            for (int q = 2 * pairs - 1; q >= 0; q--) {
                f.backend.advance(q, q + 1);
                assertEquals(q * 100 + q + 1, c.getVringBase(q));
            }
            assertEquals(0, f.backend.runningCount());
            assertNull(f.backend.fdProblem());
        }
    }

    @Test
    void badRequestsAreRejectedWithReplyAckAndChangeNothing() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            int efd = f.eventFd();
            long before = ProtocolFixture.openFds();
            // unknown request
            assertThrows(Rejected.class, () -> c.sendAck(99, new byte[0], null));
            // unknown request carrying fds: they are closed
            assertThrows(Rejected.class, () -> c.sendAck(99, new byte[8], new int[] {efd, efd}));
            // wrong sizes
            assertThrows(Rejected.class, () -> c.sendAck(SET_FEATURES, new byte[4], null));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_NUM, new byte[12], null));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_ADDR, new byte[8], null));
            assertThrows(Rejected.class, () -> c.sendAck(SET_OWNER, new byte[8], null));
            // wrong fd counts
            assertThrows(Rejected.class, () -> c.sendAck(SET_OWNER, new byte[0], new int[] {efd}));
            assertThrows(Rejected.class, () -> c.sendAck(SET_VRING_NUM, VhostUserClient.vringAddr(0, 0, 0, 0, 0, 0),
                    new int[] {efd}));
            // bad ring sizes
            assertThrows(Rejected.class, () -> c.setVringNum(0, 0));
            assertThrows(Rejected.class, () -> c.setVringNum(0, 100));
            assertThrows(Rejected.class, () -> c.setVringNum(0, 65536));
            assertThrows(Rejected.class, () -> c.setVringBase(0, 70000));
            // ring addresses: misaligned, outside memory, logging flag
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            c.setVringNum(0, ProtocolFixture.RING);
            assertThrows(Rejected.class, () -> c.setVringAddr(0, 0, a[0] + 8, a[2], a[1], 0));
            assertThrows(Rejected.class, () -> c.setVringAddr(0, 0, 0x1000, a[2], a[1], 0));
            assertThrows(Rejected.class, () -> c.setVringAddr(0, 0, a[0], a[2], f.mem.userAddress(
                    f.mem.gpaBase() + ProtocolFixture.RAM - 64), 0), "avail ring crossing the end of memory");
            assertThrows(Rejected.class, () -> c.setVringAddr(0, VRING_F_LOG, a[0], a[2], a[1], -16L),
                    "used-ring log address that wraps");
            // bad version
            assertThrows(VhostUserClient.ConnectionLost.class, () -> {
                c.send(GET_FEATURES, 0x2, null, null); // version bits 3
                c.readReply();
            });
            assertTrue(c.awaitClosed(2000), "a wrong protocol version ends the session");
            ProtocolFixture.awaitTrue(() -> !f.server.sessionActive(), 2000, "session end");
            assertEquals(0, f.backend.runningCount());
            assertNull(f.backend.fdProblem());
            // every fd that came with a rejected message was closed (our own eventfd stays open)
            // (one fewer: the server's end of the connection is gone)
            ProtocolFixture.awaitTrue(() -> ProtocolFixture.openFds() <= before - 1, 10_000,
                    "fds back to " + (before - 1) + " (now " + ProtocolFixture.openFds() + ")");
        }
    }

    @Test
    void badRequestWithoutReplyAckClosesTheSessionAndTheNextOneWorks() {
        try (ProtocolFixture f = new ProtocolFixture(1)) {
            try (VhostUserClient c = f.connect()) {
                c.negotiate(ProtocolFixture.SPLIT_RINGS, PROTOCOL_SUPPORTED & ~(1L << PROTOCOL_F_REPLY_ACK));
                c.setMemTable(List.of(f.mem.region()));
                f.setupRing(c, 0, 0);
                c.setVringNum(5, 256); // out of range, no REPLY_ACK: the back-end closes the session
                assertTrue(c.awaitClosed(2000));
            }
            ProtocolFixture.awaitTrue(() -> f.server.sessionsEnded() == 1, 2000, "session end");
            assertEquals(0, f.backend.runningCount(), "rings stopped when the session ended");
            assertTrue(f.backend.resets() >= 1);
            try (VhostUserClient c = f.connectReady()) {
                f.setupRing(c, 0, 0);
                assertTrue(f.backend.isRunning(0));
            }
        }
    }

    @Test
    void oversizedMessageClosesTheSession() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            byte[] hdr = new byte[HEADER_SIZE];
            MemorySegment h = MemorySegment.ofArray(hdr);
            h.set(U32, REQUEST_OFFSET, SET_FEATURES);
            h.set(U32, FLAGS_OFFSET, VERSION);
            h.set(U32, SIZE_OFFSET, 1 << 20);
            c.sendRaw(hdr, null);
            assertTrue(c.awaitClosed(2000));
        }
    }

    @Test
    void truncatedMessageClosesTheSession() {
        try (ProtocolFixture f = new ProtocolFixture(1)) {
            VhostUserClient c = f.connect();
            byte[] hdr = new byte[HEADER_SIZE + 4];
            MemorySegment h = MemorySegment.ofArray(hdr);
            h.set(U32, REQUEST_OFFSET, SET_FEATURES);
            h.set(U32, FLAGS_OFFSET, VERSION);
            h.set(U32, SIZE_OFFSET, 8);
            c.sendRaw(hdr, null);
            c.close(); // EOF in the middle of the payload
            ProtocolFixture.awaitTrue(() -> f.server.sessionsEnded() == 1, 2000, "session end");
            assertEquals(0, f.backend.ackedFeatures());
        }
    }

    @Test
    void memoryTableValidation() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            MemoryRegion whole = f.mem.region();
            List<MemoryRegion> halves = f.mem.regions(2);
            // overlapping in guest-physical space
            MemoryRegion h0 = halves.get(0);
            MemoryRegion overlapGpa = new MemoryRegion(h0.guestPhysAddr() + 4096, h0.size(), h0.userAddr() + (1L << 30),
                    0, whole.fd());
            assertThrows(Rejected.class, () -> c.setMemTable(List.of(h0, overlapGpa)));
            // overlapping in front-end virtual space
            MemoryRegion overlapUva = new MemoryRegion(h0.guestPhysAddr() + (1L << 30), h0.size(), h0.userAddr() + 4096,
                    0, whole.fd());
            assertThrows(Rejected.class, () -> c.setMemTable(List.of(h0, overlapUva)));
            // pointing past the end of its fd
            MemoryRegion past = new MemoryRegion(whole.guestPhysAddr(), whole.size(), whole.userAddr(), 4096, whole.fd());
            assertThrows(Rejected.class, () -> c.setMemTable(List.of(past)));
            // an fd that is not memory
            int efd = f.eventFd();
            MemoryRegion notMem = new MemoryRegion(whole.guestPhysAddr(), 4096, whole.userAddr(), 0, efd);
            assertThrows(Rejected.class, () -> c.setMemTable(List.of(notMem)));
            // size 0 and wrapping ranges (built by hand: MemoryRegion refuses them)
            byte[] raw = new byte[MEM_REGIONS_OFFSET + REGION_SIZE];
            MemorySegment s = MemorySegment.ofArray(raw);
            s.set(U32, MEM_NREGIONS_OFFSET, 1);
            s.set(U64, MEM_REGIONS_OFFSET + REGION_GPA_OFFSET, -4096L);
            s.set(U64, MEM_REGIONS_OFFSET + REGION_SIZE_OFFSET, 8192);
            assertThrows(Rejected.class, () -> c.sendAck(SET_MEM_TABLE, raw, new int[] {whole.fd()}));
            s.set(U64, MEM_REGIONS_OFFSET + REGION_SIZE_OFFSET, 0);
            assertThrows(Rejected.class, () -> c.sendAck(SET_MEM_TABLE, raw, new int[] {whole.fd()}));
            // region count vs fds vs size
            assertThrows(Rejected.class, () -> c.sendAck(SET_MEM_TABLE, raw, null));
            s.set(U32, MEM_NREGIONS_OFFSET, 9);
            assertThrows(Rejected.class, () -> c.sendAck(SET_MEM_TABLE, raw, new int[] {whole.fd()}));
            assertNull(f.backend.memory(), "nothing was installed");
            // valid: two regions
            c.setMemTable(halves);
            assertEquals(2, f.backend.memory().regionCount());
            // replacing with one region
            c.setMemTable(List.of(whole));
            assertEquals(1, f.backend.memory().regionCount());
        }
    }

    @Test
    void addAndRemoveMemoryRegions() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            List<MemoryRegion> quarters = f.mem.regions(4);
            for (MemoryRegion r : quarters) {
                c.addMemReg(r);
            }
            assertEquals(4, f.backend.memory().regionCount());
            MemoryRegion q1 = quarters.get(1);
            c.addMemReg(q1); // the same region again: a no-op (QEMU sends it once per queue pair)
            assertEquals(4, f.backend.memory().regionCount());
            assertThrows(Rejected.class, () -> c.addMemReg(new MemoryRegion(q1.guestPhysAddr(), q1.size(),
                    q1.userAddr() + (1L << 30), q1.mmapOffset(), q1.fd())), "overlaps an existing region");
            // a ring wholly inside the first quarter starts
            f.setupRing(c, 0, 0);
            assertTrue(f.backend.isRunning(0));
            c.remMemReg(quarters.get(3));
            assertEquals(3, f.backend.memory().regionCount());
            c.remMemReg(quarters.get(3)); // already removed: a no-op (once per queue pair, see above)
            MemoryRegion q2 = quarters.get(2);
            c.remMemReg(new MemoryRegion(q2.guestPhysAddr(), q2.size(), q2.userAddr() + 4096, 0, -1));
            assertEquals(3, f.backend.memory().regionCount(), "user address must match: nothing removed");
            // ADD_MEM_REG needs exactly one fd
            assertThrows(Rejected.class, () -> c.sendAck(ADD_MEM_REG, VhostUserClient.singleRegion(quarters.get(3)), null));
            // REM_MEM_REG tolerates one (unused) fd and closes it
            c.sendAck(REM_MEM_REG, VhostUserClient.singleRegion(q2), new int[] {q2.fd()});
            assertEquals(2, f.backend.memory().regionCount());
        }
    }

    @Test
    void pendingRingStartsWhenMemoryArrives() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            f.setupRing(c, 0, 3);
            assertFalse(f.backend.isRunning(0), "no memory table yet");
            c.setMemTable(List.of(f.mem.region()));
            assertTrue(f.backend.isRunning(0));
            assertEquals(3, f.backend.ring(0).baseIndex());
        }
    }

    @Test
    void configSpaceMtuAndRarp() throws Exception {
        try (ProtocolFixture f = new ProtocolFixture(2); VhostUserClient c = f.connectReady()) {
            VirtioNetConfig cfg = c.getNetConfig();
            assertEquals(f.backend.config(), cfg);
            assertEquals(VirtioNetConfig.STATUS_LINK_UP, cfg.status());
            // partial read: the MTU field
            byte[] mtu = c.getConfig(VirtioNetConfig.MTU_OFFSET, 2, CONFIG_FLAG_WRITABLE);
            assertEquals(1500, (mtu[0] & 0xff) | (mtu[1] & 0xff) << 8);
            // out of range read: empty error reply, session goes on
            assertNull(c.getConfig(250, 16, 0));
            c.netSetMtu(9000);
            assertEquals(9000, c.getNetConfig().mtu());
            assertThrows(Rejected.class, () -> c.netSetMtu(20));
            assertThrows(Rejected.class, () -> c.netSetMtu(9001), "the device refuses it");
            assertEquals(9000, c.getNetConfig().mtu());
            // MAC is writable
            byte[] mac = {0x02, 0, 0, 0, 0, 0x42};
            c.setConfig(0, mac, CONFIG_FLAG_WRITABLE);
            assertArrayEquals(mac, c.getNetConfig().mac());
            // status and MTU are read-only
            assertThrows(Rejected.class, () -> c.setConfig(VirtioNetConfig.STATUS_OFFSET, new byte[] {3, 0}, 0));
            assertThrows(Rejected.class, () -> c.setConfig(VirtioNetConfig.MTU_OFFSET, new byte[] {1, 1}, 1));
            assertThrows(Rejected.class, () -> c.setConfig(0, mac, 7), "unknown flags");
            // writing the same value to a read-only field is not a change
            c.setConfig(VirtioNetConfig.STATUS_OFFSET, new byte[] {1, 0}, 0);
            c.sendRarp(mac);
            f.backend.awaitEvent("rarp 02:00:00:00:00:42", 1000);
        }
    }

    @Test
    void resetDeviceStopsEverythingButKeepsTheSession() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 0);
            f.setupRing(c, 1, 0);
            c.resetDevice();
            assertEquals(0, f.backend.runningCount());
            assertEquals(1, f.backend.resets());
            assertTrue(f.server.sessionActive());
            // set up again on the same connection
            c.setFeatures(c.getFeatures() & ~LOG_ALL_BIT);
            c.setMemTable(List.of(f.mem.region()));
            f.setupRing(c, 0, 0);
            assertTrue(f.backend.isRunning(0));
        }
    }

    @Test
    void resetOwnerDisablesRings() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 0);
            c.setVringEnable(0, true);
            c.resetOwner();
            assertFalse(f.backend.enabled(0));
            assertTrue(f.backend.isRunning(0));
        }
    }

    @Test
    void secondConnectionIsRefusedWhileOneIsActive() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            f.setupRing(c, 0, 0);
            try (VhostUserClient second = f.connect()) {
                assertTrue(second.awaitClosed(2000), "second front-end is closed");
            }
            assertEquals(1, f.server.connectionsRefused());
            // the first one is undisturbed
            assertTrue(f.backend.isRunning(0));
            assertEquals(0, c.getVringBase(0));
        }
    }

    @Test
    @SuppressWarnings("try") // closes a client early on purpose
    void resetOfOneDeviceDoesNotDisturbAnother() {
        try (ProtocolFixture a = new ProtocolFixture(1); ProtocolFixture b = new ProtocolFixture(2);
             VhostUserClient ca = a.connectReady(); VhostUserClient cb = b.connectReady()) {
            a.setupRing(ca, 0, 0);
            b.setupRing(cb, 0, 0);
            b.setupRing(cb, 3, 5);
            ca.resetDevice();
            ca.close();
            ProtocolFixture.awaitTrue(() -> a.server.sessionsEnded() == 1, 2000, "session a ends");
            assertTrue(b.backend.isRunning(0));
            assertTrue(b.backend.isRunning(3));
            assertEquals(0, b.backend.resets());
            assertEquals(5, cb.getVringBase(3));
            assertNull(b.backend.fdProblem());
        }
    }

    @Test
    @SuppressWarnings("try") // closes the client early on purpose
    void inheritedConnectedFd() {
        int[] pair = io.jvhost.nativ.UnixSocket.socketPair();
        RecordingBackend backend = new RecordingBackend(1);
        try (VhostUserServer s = VhostUserServer.inherit("inh", pair[0], backend, FeatureSet.all());
             VhostUserClient c = VhostUserClient.onFd(pair[1])) {
            assertEquals(VirtioFeatures.SUPPORTED | PROTO_BIT, c.getFeatures());
            c.close();
            ProtocolFixture.awaitTrue(() -> !s.running(), 2000, "server ends with its only connection");
        }
    }

    @Test
    void inheritedListeningFd() {
        String path = "/tmp/jvhost-inh-" + System.nanoTime() + ".sock";
        int lfd = io.jvhost.nativ.UnixSocket.listen(path, 1);
        RecordingBackend backend = new RecordingBackend(1);
        try (VhostUserServer s = VhostUserServer.inherit("inhl", lfd, backend, FeatureSet.all())) {
            for (int i = 0; i < 2; i++) {
                try (VhostUserClient c = VhostUserClient.connect(path)) {
                    assertEquals(VirtioFeatures.SUPPORTED | PROTO_BIT, c.getFeatures());
                }
                int n = i + 1;
                ProtocolFixture.awaitTrue(() -> s.sessionsEnded() == n, 2000, "session end");
            }
        } finally {
            try {
                java.nio.file.Files.deleteIfExists(java.nio.file.Path.of(path));
            } catch (java.io.IOException e) {
                // best effort
            }
        }
    }

    @Test
    void serverRemovesItsSocketOnClose() {
        ProtocolFixture f = new ProtocolFixture(1);
        assertTrue(java.nio.file.Files.exists(java.nio.file.Path.of(f.path)));
        f.close();
        assertFalse(java.nio.file.Files.exists(java.nio.file.Path.of(f.path)));
        assertFalse(f.server.running());
    }

    @Test
    void memoryIsReallyMapped() {
        // the device sees what the driver wrote, through the fd the session mapped
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            long gpa = f.mem.alloc(64, 64);
            f.mem.at(gpa, 8).set(U64, 0, 0x1122334455667788L);
            MemorySegment seen = f.backend.memory().gpaToSegment(gpa, 8);
            assertNotNull(seen);
            assertNotEquals(f.mem.at(gpa, 8).address(), seen.address(), "a mapping of its own");
            assertEquals(0x1122334455667788L, seen.get(U64, 0));
            assertEquals(1, c.getQueueNum());
        }
    }

    @Test
    void unalignedMmapOffsetIsMapped() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            MemoryRegion w = f.mem.region();
            MemoryRegion odd = new MemoryRegion(w.guestPhysAddr() + 0x100, w.size() - 0x1000, w.userAddr() + 0x100, 0x100,
                    w.fd());
            c.setMemTable(List.of(odd));
            f.mem.at(w.guestPhysAddr() + 0x100, 8).set(U64, 0, 42L);
            assertEquals(42L, f.backend.memory().gpaToSegment(w.guestPhysAddr() + 0x100, 8).get(U64, 0));
        }
    }

    @Test
    void noFdLeakOverThousandsOfConnections() throws Exception {
        // 2000 session start/end INFO lines say nothing here
        AutoCloseable quiet = ProtocolFixture.quietLogs(java.util.logging.Level.WARNING);
        try (ProtocolFixture f = new ProtocolFixture(1)) {
            int kick = f.eventFd();
            int call = f.eventFd();
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            // warm up (class loading, lazily opened jars)
            cycle(f, kick, call, a);
            ProtocolFixture.awaitTrue(() -> f.server.sessionsEnded() == 1, 2000, "first session end");
            long before = ProtocolFixture.openFds();
            int cycles = 2000;
            for (int i = 1; i < cycles; i++) {
                cycle(f, kick, call, a);
            }
            ProtocolFixture.awaitTrue(() -> f.server.sessionsEnded() == cycles, 10_000,
                    "all sessions ended (" + f.server.sessionsEnded() + ")");
            long after = ProtocolFixture.openFds();
            assertTrue(after <= before, "fds before " + before + ", after " + after);
            assertNull(f.backend.fdProblem());
        } finally {
            quiet.close();
        }
    }

    private static void cycle(ProtocolFixture f, int kick, int call, long[] a) {
        try (VhostUserClient c = f.connect()) {
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            c.setMemTable(List.of(f.mem.region()));
            c.setupRing(0, ProtocolFixture.RING, 0, a[0], a[1], a[2], kick, call);
            c.setVringErr(0, call);
            c.setVringEnable(0, true);
        }
    }

    @Test
    void eventFdsReachTheDevice() {
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connectReady()) {
            int kick = f.eventFd();
            long[] a = f.ringAddrs(ProtocolFixture.RING);
            c.setupRing(0, ProtocolFixture.RING, 0, a[0], a[1], a[2], kick, f.eventFd());
            EventFd.signal(kick);
            int deviceKick = f.backend.ring(0).kickFd();
            assertNotEquals(kick, deviceKick, "the device has its own fd for the same eventfd");
            assertEquals(1, EventFd.drain(deviceKick));
        }
    }

    @Test
    void hugeRegionPastFileEndWouldSigbusAndIsRefused() {
        // 4 KiB memfd announced as 1 MiB: mapping would succeed and touching it would kill the process
        int memfd = Mman.memfdCreate("small");
        try (ProtocolFixture f = new ProtocolFixture(1); VhostUserClient c = f.connect()) {
            Mman.ftruncate(memfd, 4096);
            c.negotiate(ProtocolFixture.SPLIT_RINGS, -1L);
            assertThrows(Rejected.class, () -> c.setMemTable(List.of(new MemoryRegion(0, 1 << 20, 0x7000_0000_0000L, 0,
                    memfd))));
            assertThrows(Rejected.class, () -> c.addMemReg(new MemoryRegion(0, 1 << 20, 0x7000_0000_0000L, 0, memfd)));
        } finally {
            Fds.closeQuietly(memfd);
        }
    }
}
