package io.jvhost.engine;

import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.DriverVirtqueue;
import io.jvhost.memory.DirtyLog;
import io.jvhost.nativ.EventFd;
import io.jvhost.nativ.Fds;
import io.jvhost.net.SeqPacketPair;
import io.jvhost.virtio.VirtioFeatures;
import io.jvhost.virtq.RingSetup;
import io.jvhost.virtq.VringUsed;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Switching dirty logging on a running worker while frames flow (what QEMU does at the start and
 * end of a migration, and when it resizes the log): once the switch is acknowledged, every RX
 * frame published after it is marked — buffer pages and the used ring — in the new log; the
 * previous log is never touched again; switched off, nothing is marked; LOG_ALL without a log
 * holds the ring (nothing written to guest memory) until a log arrives.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DirtyLogSwitchTest {
    private static final long GPA_BASE = 0x10_0000;
    private static final int RING = 64;
    private static final int BUF = 2048;
    private static final int FRAME = 12 + 300;
    private static final long PAGE = DirtyLog.PAGE_SIZE;

    private DriverMemory mem;
    private DriverVirtqueue dq;
    private int kick;
    private final long[] bufOfHead = new long[RING];
    /** Used entries taken so far (the used index of the next one). */
    private int polled;

    @Test
    void switchingUnderTrafficLogsEverythingPublishedAfterTheAcknowledgement() throws Exception {
        int[] sp = SeqPacketPair.open();
        kick = EventFd.create(0, true);
        long features = VirtioFeatures.bit(VirtioFeatures.F_VERSION_1) | VirtioFeatures.bit(VirtioFeatures.NET_F_MRG_RXBUF);
        AtomicLong fed = new AtomicLong();
        Thread feeder = null;
        try (Arena arena = Arena.ofShared()) {
            mem = DriverMemory.allocate(4 << 20, GPA_BASE);
            DirtyLog log1 = DirtyLog.over(arena.allocate(256, 8)); // 0 .. 8 MiB
            DirtyLog log2 = DirtyLog.over(arena.allocate(256, 8));
            Fds.setNonBlocking(sp[0], true);
            QueuePairProxy w = QueuePairProxy.withOwnWorker("logsw", 0, sp[0], WorkerConfig.defaults(), RING);
            try {
                w.setFeatures(features, 1500);
                w.setMemory(mem.guestMemory(1));
                dq = new DriverVirtqueue(mem, RING, features, 0, 0);
                w.startRing(QueuePair.RX, new RingSetup(RING, mem.userAddress(dq.descGpa()), mem.userAddress(dq.availGpa()),
                        mem.userAddress(dq.usedGpa()), 0, features, true, dq.usedGpa(), kick, -1, -1, true));
                for (int i = 0; i < RING; i++) {
                    long g = mem.alloc(BUF, 1024); // every other buffer crosses a page boundary
                    bufOfHead[dq.add(new long[] {g}, new int[] {BUF}, 0, 1, false)] = g;
                }
                dq.publish();
                w.start();
                w.setDirtyLog(log1, false); // a log handed over while LOG_ALL is off: not used yet
                feeder = Thread.ofPlatform().daemon().start(() -> {
                    try (Arena a = Arena.ofConfined()) {
                        MemorySegment f = a.allocate(FRAME);
                        while (!Thread.currentThread().isInterrupted()) {
                            if (Fds.write(sp[1], f, FRAME) == FRAME) {
                                fed.incrementAndGet();
                            }
                            Thread.sleep(0, 200_000);
                        }
                    } catch (InterruptedException | RuntimeException e) {
                        // socket closed or interrupted: done
                    }
                });
                EventFd.signal(kick);

                recycle(200, null);
                assertEquals(0, log1.drain(), "LOG_ALL off: nothing marked");

                w.setDirtyLog(log1, true);
                int after = usedIdx();
                assertEquals(0, recycle(300, log1, after), "every frame published after the switch is in log 1");

                w.setDirtyLog(log2, true); // a new log (QEMU resizing it): log 1 is done with once this returns
                after = usedIdx();
                log1.drain();
                assertEquals(0, recycle(300, log2, after), "... and after the next switch in log 2");
                assertEquals(0, log1.drain(), "the old log is not touched after the switch");

                w.setDirtyLog(log2, false);
                log2.drain();
                recycle(200, null);
                assertEquals(0, log2.drain(), "logging off: nothing marked");

                w.setDirtyLog(null, true); // LOG_ALL, no log yet: the ring waits
                assertTrue(w.logHeld());
                drainUsed();
                int held = usedIdx();
                Thread.sleep(200);
                assertTrue(fed.get() > polled + 10, "frames wait in the tap's place: " + fed.get() + " fed, " + polled
                        + " taken");
                assertEquals(held, usedIdx(), "nothing written to the used ring while held");
                w.setDirtyLog(log2, true);
                assertFalse(w.logHeld());
                assertEquals(0, recycle(200, log2, held), "resumes, logged, with the log");
            } finally {
                if (feeder != null) {
                    feeder.interrupt();
                }
                Fds.closeQuietly(sp[1]);
                w.close();
            }
        } finally {
            Fds.closeQuietly(sp[0]);
            Fds.closeQuietly(kick);
            if (mem != null) {
                mem.close();
            }
        }
    }

    private int usedIdx() {
        return VringUsed.idxAcquire(dq.usedRing());
    }

    private void recycle(int frames, DirtyLog log) throws InterruptedException {
        recycle(frames, log, 0);
    }

    /** Takes what was published until nothing more comes for 100 ms, re-posting the buffers. */
    private void drainUsed() throws InterruptedException {
        long quietSince = System.nanoTime();
        while (System.nanoTime() - quietSince < TimeUnit.MILLISECONDS.toNanos(100)) {
            if (dq.usedPending() > 0) {
                recycle(1, null);
                quietSince = System.nanoTime();
            } else {
                Thread.sleep(5);
            }
        }
    }

    /**
     * Takes {@code frames} used entries (re-posting each buffer), checking for those at used index
     * {@code from} or later that {@code log} has their buffer's written pages and their used
     * element's page marked. Returns the number of unmarked ones.
     */
    private int recycle(int frames, DirtyLog log, int from) throws InterruptedException {
        int missing = 0;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        for (int got = 0; got < frames; ) {
            long u = dq.pollUsed();
            if (u == -1) {
                assertTrue(System.nanoTime() < deadline, "frames stopped arriving after " + got);
                Thread.sleep(1);
                continue;
            }
            int head = (int) (u >>> 32);
            int len = (int) u;
            int at = polled++;
            if (log != null && ((at - from) & 0xffff) < 0x8000) {
                long g = bufOfHead[head];
                for (long p = g / PAGE; p <= (g + len - 1) / PAGE; p++) {
                    missing += log.isDirty(p * PAGE) ? 0 : 1;
                }
                long elem = dq.usedGpa() + VringUsed.elemOffset(at % RING);
                missing += log.isDirty(elem) ? 0 : 1;
            }
            bufOfHead[dq.add(new long[] {bufOfHead[head]}, new int[] {BUF}, 0, 1, false)] = bufOfHead[head];
            dq.publish();
            EventFd.signal(kick);
            got++;
        }
        return missing;
    }
}
