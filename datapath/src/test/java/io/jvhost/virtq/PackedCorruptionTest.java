package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link CorruptionTest} for packed rings: thousands of rings of any size filled with random,
 * mostly-plausible descriptors (flags mixing both wrap patterns, ids in and out of range, indirect
 * tables of garbage), taken and completed in random order (IN_ORDER on some): the walker never
 * throws, every chain lies inside guest memory, ids are in range and never handed out twice while
 * in flight, and the accounting adds up.
 */
class PackedCorruptionTest {
    static final int RINGS_PER_SEED = 500;

    static {
        Logger.getLogger(PackedVirtqueue.class.getName()).setLevel(Level.OFF);
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 0xdecafbadL})
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void randomPackedRingsNeverEscapeMemory(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        Map<VirtqError, Integer> seen = new EnumMap<>(VirtqError.class);
        int chains = 0;
        for (int ring = 0; ring < RINGS_PER_SEED; ring++) {
            int size = rnd.nextBoolean() ? 1 << rnd.nextInt(0, 8) : rnd.nextInt(1, 300);
            long features = (rnd.nextBoolean() ? 1L << VirtioFeatures.RING_F_INDIRECT_DESC : 0)
                    | (rnd.nextBoolean() ? 1L << VirtioFeatures.F_IN_ORDER : 0);
            int regions = 1 << rnd.nextInt(0, 3);
            try (PackedRing r = new PackedRing(size, features, regions, 1 + rnd.nextInt(32))) {
                long lo = r.mem.gpaBase();
                long span = r.mem.size();
                for (int i = 0; i < size; i++) {
                    int pattern = switch (rnd.nextInt(6)) {
                        case 0 -> PackedDesc.availFlags(false);
                        case 1 -> PackedDesc.usedFlags(true);
                        case 2 -> rnd.nextInt(65536) & (PackedDesc.F_AVAIL | PackedDesc.F_USED);
                        default -> PackedDesc.availFlags(true);
                    };
                    int low = rnd.nextInt(12) == 0 ? CorruptionTest.plausibleFlags(rnd)
                            : (rnd.nextInt(4) == 0 ? PackedDesc.F_NEXT : 0) | (rnd.nextBoolean() ? PackedDesc.F_WRITE : 0)
                            | (rnd.nextInt(10) == 0 ? PackedDesc.F_INDIRECT : 0);
                    int flags = (low & ~(PackedDesc.F_AVAIL | PackedDesc.F_USED)) | pattern;
                    int id = rnd.nextInt(10) == 0 ? rnd.nextInt(65536) : rnd.nextInt(size);
                    long addr = rnd.nextInt(3) == 0 ? CorruptionTest.plausibleAddr(rnd, lo, span) : r.dataGpa + rnd.nextInt(60_000);
                    int len = rnd.nextInt(3) == 0 ? CorruptionTest.plausibleLen(rnd) : rnd.nextInt(1, 2048);
                    r.put(i, addr, len, id, flags);
                }
                for (int k = 0; k < 16; k++) {
                    long t = r.dataGpa + 16L * rnd.nextInt(200);
                    PackedDesc.putPlain(r.mem.at(t, PackedDesc.SIZE), 0, CorruptionTest.plausibleAddr(rnd, lo, span),
                            CorruptionTest.plausibleLen(rnd), 0, CorruptionTest.plausibleFlags(rnd));
                }
                List<Integer> inFlight = new ArrayList<>();
                for (int k = 0; k <= size; k++) {
                    int res = r.next();
                    if (res == DeviceQueue.BROKEN) {
                        seen.merge(r.q.brokenReason(), 1, Integer::sum);
                        break;
                    }
                    if (res == DeviceQueue.NONE) {
                        break;
                    }
                    chains++;
                    Chain c = r.chain;
                    assertTrue(r.iovecsInside(), "iovec outside memory, seed " + seed + " ring " + ring);
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
                    assertTrue(!inFlight.contains(c.head()), "id handed out twice");
                    inFlight.add(c.head());
                    if (rnd.nextInt(3) == 0 && !inFlight.isEmpty()) {
                        int id = inFlight.remove(rnd.nextInt(inFlight.size()));
                        r.q.addUsed(id, 0);
                        r.q.publishUsed();
                    }
                }
                assertEquals(r.q.isBroken() ? r.q.inFlight() : inFlight.size(), r.q.inFlight());
                r.q.returnInFlight();
                assertEquals(0, r.q.inFlight());
            }
        }
        assertTrue(chains > 100, "valid chains: " + chains);
        assertTrue(seen.size() >= 6, "distinct violations: " + seen);
    }
}
