package io.jvhost.virtq;

import io.jvhost.virtio.VirtioFeatures;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A driver and the device exchange buffers over a packed ring until both wrap counters have
 * flipped many times: odd ring sizes, chains of several descriptors wrapping past the last slot,
 * indirect tables, completions out of order and in batches. Each used descriptor must name a
 * buffer in flight with the length the device gave, and each chain the device takes must point at
 * exactly the driver's buffers.
 */
class PackedVirtqueueExchangeTest {

    static Stream<Arguments> rings() {
        List<Arguments> a = new ArrayList<>();
        for (int size : new int[]{1, 2, 3, 4, 257}) {
            for (boolean indirect : new boolean[]{false, true}) {
                for (boolean inOrder : new boolean[]{false, true}) {
                    a.add(Arguments.of(size, indirect, inOrder));
                }
            }
        }
        return a.stream();
    }

    @ParameterizedTest(name = "size={0} indirect={1} inOrder={2}")
    @MethodSource("rings")
    void buffersComeBackOnceWithTheirLengthsOverManyWraps(int size, boolean indirect, boolean inOrder) {
        long features = (indirect ? 1L << VirtioFeatures.RING_F_INDIRECT_DESC : 0)
                | (inOrder ? 1L << VirtioFeatures.F_IN_ORDER : 0);
        Random rnd = new Random(size * 31L + (indirect ? 1 : 0) + (inOrder ? 2 : 0));
        try (PackedRing r = new PackedRing(size, features, 2, 64)) {
            int rounds = 40 * size + 200;
            long total = 0;
            int[] idLens = new int[size];
            boolean[] idWritable = new boolean[size];
            long[] idAddr = new long[size];
            int nextId = 0;
            List<Integer> taken = new ArrayList<>();
            for (int round = 0; round < rounds; round++) {
                // driver: offer chains while slots and ids are free
                int offers = 1 + rnd.nextInt(Math.min(size, 4));
                for (int k = 0; k < offers; k++) {
                    int free = r.freeSlots();
                    if (free == 0) {
                        break;
                    }
                    int id = -1;
                    for (int t = 0; t < size; t++) {
                        int cand = (nextId + t) % size;
                        if (r.slotsOf[cand] < 0) {
                            id = cand;
                            break;
                        }
                    }
                    if (id < 0) {
                        break;
                    }
                    nextId = (id + 1) % size;
                    boolean write = rnd.nextBoolean();
                    long addr = r.dataGpa + (long) id * 64;
                    idAddr[id] = addr;
                    idWritable[id] = write;
                    int wf = write ? PackedDesc.F_WRITE : 0;
                    if (indirect && rnd.nextInt(3) == 0) {
                        long table = r.dataGpa + 32 * 1024 + (long) id * 64;
                        r.indirectDesc(table, 0, addr, 32, wf);
                        r.indirectDesc(table, 1, addr + 32, 32, wf);
                        r.offer(id, table, 2 * PackedDesc.SIZE, PackedDesc.F_INDIRECT);
                    } else {
                        int n = 1 + rnd.nextInt(Math.min(free, 3));
                        long[] addrs = new long[n];
                        int[] lens = new int[n];
                        int[] fl = new int[n];
                        for (int i = 0; i < n; i++) {
                            addrs[i] = addr + (long) i * (64 / n);
                            lens[i] = 64 / n;
                            fl[i] = wf;
                        }
                        r.offer(id, addrs, lens, fl);
                    }
                }
                // device: take all, complete some in a random order, publish once
                int c;
                while ((c = r.next()) == DeviceQueue.CHAIN) {
                    int id = r.chain.head();
                    assertTrue(r.iovecsInside());
                    long bytes = idWritable[id] ? r.chain.writableBytes() : r.chain.readableBytes();
                    assertTrue(bytes > 0 && bytes <= 64, "chain bytes " + bytes);
                    long base = idWritable[id] ? r.chain.writableBase(0) : r.chain.readableBase(0);
                    assertEquals(r.mem.hostAddress(idAddr[id]), base);
                    taken.add(id);
                }
                assertEquals(DeviceQueue.NONE, c, () -> r.q.brokenMessage());
                int complete = taken.isEmpty() ? 0 : 1 + rnd.nextInt(taken.size());
                for (int k = 0; k < complete; k++) {
                    int id = taken.remove(inOrder ? 0 : rnd.nextInt(taken.size()));
                    int len = idWritable[id] ? 1 + rnd.nextInt(64) : 0;
                    idLens[id] = len;
                    r.q.addUsed(id, len);
                }
                r.q.publishUsed();
                assertEquals(taken.size(), r.q.inFlight());
                int got;
                while ((got = r.poll()) > 0) {
                    total += got;
                    if (!inOrder || idWritable[r.lastId]) {
                        assertEquals(idLens[r.lastId], r.lastLen, "len of id " + r.lastId);
                    }
                }
            }
            assertNull(r.q.brokenReason());
            assertTrue(total > 20L * size, "exchanged " + total);
        }
    }

    @Test
    void aBatchIsPublishedByTheFirstDescriptorsFlagsLast() {
        try (PackedRing r = new PackedRing(8, 0, 1, 8)) {
            for (int id = 0; id < 3; id++) {
                r.offer(id, r.dataGpa + id * 64L, 64, PackedDesc.F_WRITE);
            }
            for (int id = 0; id < 3; id++) {
                assertEquals(DeviceQueue.CHAIN, r.next());
            }
            r.q.addUsed(0, 10);
            r.q.addUsed(1, 11);
            r.q.addUsed(2, 12);
            assertEquals(0, r.poll(), "nothing visible before the publish");
            // the later descriptors already carry their flags: only the first one's store publishes
            assertTrue(PackedDesc.isUsed(PackedDesc.flags(r.desc, PackedDesc.offset(1)), true));
            r.q.publishUsed();
            for (int id = 0; id < 3; id++) {
                assertEquals(1, r.poll());
                assertEquals(id, r.lastId);
                assertEquals(10 + id, r.lastLen);
            }
        }
    }

    @Test
    void aChainWrapsPastTheLastSlotWithTheWrapCounterFlipped() {
        try (PackedRing r = new PackedRing(3, 0, 1, 8)) {
            r.offer(0, r.dataGpa, 8, 0);
            r.offer(1, r.dataGpa + 64, 8, 0);
            assertEquals(DeviceQueue.CHAIN, r.next());
            assertEquals(DeviceQueue.CHAIN, r.next());
            r.q.pushUsed(0, 0);
            r.q.pushUsed(1, 0);
            assertEquals(1, r.poll());
            assertEquals(1, r.poll());
            // slots 2, 0 (wrapped), 1
            r.offer(2, new long[]{r.dataGpa, r.dataGpa + 64, r.dataGpa + 128}, new int[]{8, 8, 8}, new int[]{0, 0, 0});
            assertEquals(DeviceQueue.CHAIN, r.next(), () -> r.q.brokenMessage());
            assertEquals(3, r.chain.descriptorCount());
            assertEquals(24, r.chain.readableBytes());
            r.q.pushUsed(2, 0);
            assertEquals(1, r.poll());
            assertEquals(2, r.lastId);
        }
    }
}
