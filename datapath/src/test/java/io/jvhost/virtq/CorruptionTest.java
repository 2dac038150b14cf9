package io.jvhost.virtq;

import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.EnumMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Thousands of rings filled with random, mostly-plausible garbage (fixed seeds): the walker never
 * throws, every chain it returns lies inside guest memory, and the chain accounting adds up.
 */
class CorruptionTest {
    static final int RINGS_PER_SEED = 1000;

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 0xdecafbadL})
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void randomRingsNeverEscapeMemory(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        Map<VirtqError, Integer> seen = new EnumMap<>(VirtqError.class);
        int chains = 0;
        for (int ring = 0; ring < RINGS_PER_SEED; ring++) {
            int size = 1 << rnd.nextInt(0, 8);
            long features = rnd.nextBoolean() ? HostileGuestTest.INDIRECT : 0;
            int regions = 1 << rnd.nextInt(0, 3);
            try (RawRing r = new RawRing(size, features, regions, 1 + rnd.nextInt(32), 256 * 1024, rnd.nextInt(65536))) {
                long lo = r.mem.gpaBase();
                long span = r.mem.size();
                for (int i = 0; i < size; i++) {
                    r.desc(i, plausibleAddr(rnd, lo, span), plausibleLen(rnd), plausibleFlags(rnd), rnd.nextInt(size + 2));
                }
                // a few indirect tables of garbage in the data page
                for (int k = 0; k < 16; k++) {
                    long t = r.dataGpa + 16L * rnd.nextInt(200);
                    r.indirectDesc(t, 0, plausibleAddr(rnd, lo, span), plausibleLen(rnd), plausibleFlags(rnd), rnd.nextInt(4));
                }
                int offers = rnd.nextInt(1, size + 1);
                for (int k = 0; k < offers; k++) {
                    r.offer(rnd.nextInt(10) == 0 ? rnd.nextInt(65536) : rnd.nextInt(size));
                }
                if (rnd.nextInt(20) == 0) {
                    VringAvail.idxRelease(r.avail, rnd.nextInt(65536));
                }
                for (int k = 0; k <= offers; k++) {
                    int res = r.next();
                    if (res == SplitVirtqueue.BROKEN) {
                        seen.merge(r.q.brokenReason(), 1, Integer::sum);
                        break;
                    }
                    if (res == SplitVirtqueue.NONE) {
                        break;
                    }
                    chains++;
                    Chain c = r.chain;
                    assertTrue(r.iovecsInside(), "iovec outside memory, seed " + seed + " ring " + ring);
                    assertTrue(c.readableCount() <= c.capacity() && c.writableCount() <= c.capacity());
                    long rb = 0;
                    for (int i = 0; i < c.readableCount(); i++) {
                        rb += c.readableLen(i);
                    }
                    long wb = 0;
                    for (int i = 0; i < c.writableCount(); i++) {
                        wb += c.writableLen(i);
                    }
                    assertTrue(rb == c.readableBytes() && wb == c.writableBytes());
                    assertTrue(c.head() >= 0 && c.head() < size);
                    r.q.pushUsed(c.head(), 0);
                }
            }
        }
        // the generator must actually reach both outcomes
        assertTrue(chains > 100, "valid chains: " + chains);
        assertTrue(seen.size() >= 6, "distinct violations: " + seen);
    }

    static long plausibleAddr(SplittableRandom rnd, long lo, long span) {
        return switch (rnd.nextInt(8)) {
            case 0 -> rnd.nextLong();
            case 1 -> lo + span - rnd.nextInt(64);
            case 2 -> -rnd.nextInt(64);
            default -> lo + rnd.nextLong(span);
        };
    }

    static int plausibleLen(SplittableRandom rnd) {
        return switch (rnd.nextInt(8)) {
            case 0 -> rnd.nextInt();
            case 1 -> 0;
            case 2 -> 16 * rnd.nextInt(1, 4);
            default -> rnd.nextInt(1, 2048);
        };
    }

    static int plausibleFlags(SplittableRandom rnd) {
        return rnd.nextInt(10) == 0 ? rnd.nextInt(65536) : rnd.nextInt(8);
    }
}
