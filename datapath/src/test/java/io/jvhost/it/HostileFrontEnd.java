package io.jvhost.it;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.nativ.Mman;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.VirtqError;
import io.jvhost.virtq.VringAvail;
import io.jvhost.virtq.VringDesc;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A front-end that sets up a queue pair correctly over vhost-user and then misbehaves on its TX ring
 * the way the hostile-guest unit tests' rings do (io.jvhost.virtq.HostileGuestTest): a descriptor
 * loop, a head out of range, an avail index jump, a buffer outside its memory; or it shrinks the
 * memfd it passed (the device then faults on guest memory), or it kicks both rings as fast as it can
 * while posting nothing. Each of the first five leaves the device's TX ring broken with a known
 * reason; the kick storm breaks nothing and only costs the worker wake-ups.
 *
 * <p>Threading: the test thread; the kick storm runs on a thread of its own until {@link #close}.
 */
public final class HostileFrontEnd implements AutoCloseable {
    /** How the front-end misbehaves. */
    public enum Mode {
        CHAIN_LOOP(VirtqError.CHAIN_LOOP),
        HEAD_OUT_OF_RANGE(VirtqError.HEAD_OUT_OF_RANGE),
        AVAIL_INDEX_JUMP(VirtqError.AVAIL_INDEX_JUMP),
        BUFFER_OUTSIDE_MEMORY(VirtqError.BUFFER_OUTSIDE_MEMORY),
        SHRINK(VirtqError.MEMORY_FAULT),
        KICK_STORM(null);

        /** The reason the device's TX ring breaks for, or null (it does not). */
        public final VirtqError breaks;

        Mode(VirtqError breaks) {
            this.breaks = breaks;
        }
    }

    static final int RING = 256;
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF) | VirtioFeatures.bit(VirtioFeatures.RING_F_EVENT_IDX);

    private final Mode mode;
    private final DriverMemory mem;
    private final VhostUserClient client;
    private final DriverVirtqueue tx;
    private final int[] kicks = {EventFd.create(0, true), EventFd.create(0, true)};
    private final int[] calls = {EventFd.create(0, true), EventFd.create(0, true)};
    private final AtomicBoolean stop = new AtomicBoolean();
    private final AtomicLong stormKicks = new AtomicLong();
    private Thread storm;

    private HostileFrontEnd(Mode mode, String socket) {
        this.mode = mode;
        this.mem = DriverMemory.memfd("hostile-" + mode, 1 << 20, DriverMemory.DEFAULT_GPA_BASE);
        this.client = VhostUserClient.connect(socket);
        client.negotiate(FEATURES, VhostUserMessage.PROTOCOL_SUPPORTED);
        client.setMemTable(List.of(mem.region()));
        DriverVirtqueue rx = new DriverVirtqueue(mem, RING, FEATURES, 0, 0);
        this.tx = new DriverVirtqueue(mem, RING, FEATURES, 0, 0);
        client.setupRing(0, rx, kicks[0], calls[0]);
        client.setupRing(1, tx, kicks[1], calls[1]);
        client.setVringEnable(0, true);
        client.setVringEnable(1, true);
    }

    /** Connects to {@code socket}, sets up both rings, then misbehaves as {@code mode} says. */
    public static HostileFrontEnd attack(Mode mode, String socket) {
        HostileFrontEnd h = new HostileFrontEnd(mode, socket);
        try {
            h.misbehave();
        } catch (RuntimeException | Error e) {
            h.close();
            throw e;
        }
        return h;
    }

    public Mode mode() {
        return mode;
    }

    /** Kicks sent by the storm so far. */
    public long stormKicks() {
        return stormKicks.get();
    }

    private void misbehave() {
        MemorySegment desc = tx.descRing();
        MemorySegment avail = tx.availRing();
        long buf = mem.alloc(4096, 4096);
        switch (mode) {
            case CHAIN_LOOP -> {
                VringDesc.put(desc, 0, buf, 64, VringDesc.F_NEXT, 0);
                offer(avail, 0);
            }
            case HEAD_OUT_OF_RANGE -> offer(avail, RING + 7);
            case AVAIL_INDEX_JUMP -> avail.set(VringDesc.LE_SHORT, VringAvail.IDX_OFFSET, (short) (RING + 1));
            case BUFFER_OUTSIDE_MEMORY -> {
                VringDesc.put(desc, 0, mem.region().guestPhysAddr() + (64L << 30), 64, 0, 0);
                offer(avail, 0);
            }
            case SHRINK -> Mman.ftruncate(mem.fd(), 0);
            case KICK_STORM -> storm = Thread.ofPlatform().name("kick-storm").start(() -> {
                while (!stop.get()) {
                    EventFd.signal(kicks[0]);
                    EventFd.signal(kicks[1]);
                    stormKicks.addAndGet(2);
                    Thread.onSpinWait();
                }
            });
        }
        EventFd.signal(kicks[1]);
    }

    private static void offer(MemorySegment avail, int head) {
        avail.set(VringDesc.LE_SHORT, VringAvail.ringOffset(0), (short) head);
        VringAvail.idxRelease(avail, 1);
    }

    /** Ends the kick storm and the session. */
    @Override
    public void close() {
        stop.set(true);
        if (storm != null) {
            try {
                storm.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try {
            client.close();
        } finally {
            for (int fd : new int[] {kicks[0], kicks[1], calls[0], calls[1]}) {
                Fds.closeQuietly(fd);
            }
            mem.close();
        }
    }
}
