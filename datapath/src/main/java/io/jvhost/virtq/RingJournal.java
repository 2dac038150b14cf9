package io.jvhost.virtq;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Where each packed ring of a device left off, kept in a small shared file mapping that outlives
 * the process, so that a restarted back-end resumes a ring whose front-end lost track of it.
 *
 * <h2>Why</h2>
 * When a back-end dies, the front-end cannot ask it where its rings stopped (GET_VRING_BASE). For a
 * split ring QEMU then restores its avail index from {@code used.idx} in guest memory
 * ({@code virtio_queue_restore_last_avail_idx}) and the device resumes there. A packed ring has no
 * such index: QEMU 7.2 keeps the base it sent at the last start
 * ({@code virtio_queue_packed_restore_last_avail_idx} does nothing) and sends that stale base to the
 * restarted back-end, whose ring then waits at a slot the driver left long ago. The flags in the
 * ring cannot tell where the device was either (consumed non-head slots and elided IN_ORDER runs
 * still look available). So the device writes down its used position itself.
 *
 * <h2>What a slot holds (one per virtqueue, index = virtqueue index)</h2>
 * The ring's identity as the front-end gave it at the last start (the file holding its memory —
 * another front-end process passes another memfd even where it maps it at the same addresses, as
 * DPDK does — the three area addresses and the size) with the base the front-end sent then; and a redo record of the batch of used descriptors not known to be
 * published: each used descriptor (slot and wrap counter, id, length) is written here before it
 * is written to the ring, then one 64-bit word with the batch's first position, the position after
 * its last chain and the number of descriptors. The batch is published by one store, of its first
 * descriptor's flags; a device killed before that store left a batch the driver has not seen, and
 * the restarted device writes it again from the record and publishes it: nothing the dead device
 * completed is lost or completed twice ({@link PackedVirtqueue#start}). Used positions moved without
 * a descriptor (an elided IN_ORDER run not yet written) are not recorded: those chains are taken
 * again.
 *
 * <h2>When it is used</h2>
 * At a start whose base equals the one the same ring was started with last time, while the record
 * has moved on: that is the front-end re-sending a base it never got back from the back-end. A
 * front-end with a fresh base (a GET_VRING_BASE answer, a reset ring) or another ring (other
 * addresses) is taken at its word.
 *
 * <p>Stores are plain: a killed process's stores to a shared file mapping are in the page cache
 * all the same, and a host crash ends the guest too. Not for split rings, whose {@code used.idx}
 * already says it.
 */
public final class RingJournal {
    /** Bytes per virtqueue: a header and one record per used descriptor of the largest ring. */
    public static final long SLOT_BYTES = 64 + 8L * RingLayout.MAX_SIZE;
    /** "JVRNG" + format version 2. */
    private static final long MAGIC = 0x4A56_524E_4701_0002L;

    private static final long MAGIC_OFFSET = 0;
    private static final long DESC_OFFSET = 8;
    private static final long DRIVER_OFFSET = 16;
    private static final long DEVICE_OFFSET = 24;
    private static final long SIZE_OFFSET = 32;
    private static final long BASE_OFFSET = 36;
    /** Batch word: bits 0-15 its first position (slot | wrap &lt;&lt; 15), 16-31 the position after it, 32-47 descriptors. */
    private static final long BATCH_OFFSET = 40;
    /** Identity of the file holding the descriptor ring (another front-end process: another file). */
    private static final long MEMORY_OFFSET = 48;
    /** Per used descriptor: bits 0-15 position, 16-31 id, 32-63 length. */
    private static final long ENTRIES_OFFSET = 64;

    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED;

    private final MemorySegment all;
    private final Path path;

    private RingJournal(MemorySegment all, Path path) {
        this.all = all;
        this.path = path;
    }

    /**
     * Opens (creating it when absent) the journal file for a device of {@code virtqueues} rings.
     * The file is sparse: only the pages rings write take space. The mapping lives until the
     * journal is unreachable.
     */
    public static RingJournal open(Path path, int virtqueues) throws IOException {
        long bytes = SLOT_BYTES * virtqueues;
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.READ,
                StandardOpenOption.WRITE)) {
            // a READ_WRITE mapping past the end grows the file (zeros: no slot written yet)
            return new RingJournal(ch.map(FileChannel.MapMode.READ_WRITE, 0, bytes, Arena.ofAuto()), path);
        }
    }

    /** A journal in process memory (tests; survives only what the object survives). */
    public static RingJournal inMemory(int virtqueues) {
        return new RingJournal(Arena.ofAuto().allocate(SLOT_BYTES * virtqueues, 8), null);
    }

    /** The file, or null for {@link #inMemory}. */
    public Path path() {
        return path;
    }

    /** The slot of virtqueue {@code index} (rx of pair p: 2p, tx: 2p + 1). */
    public Slot slot(int index) {
        return new Slot(all.asSlice(SLOT_BYTES * index, SLOT_BYTES));
    }

    /** One virtqueue's record. Used by the ring's owner only (one thread at a time). */
    public static final class Slot {
        private final MemorySegment s;

        Slot(MemorySegment s) {
            this.s = s;
        }

        /** Whether the last start of this ring was in this memory at these addresses and size with this same base. */
        boolean resentBase(long memory, long desc, long driver, long device, int size, int base) {
            return s.get(LONG, MAGIC_OFFSET) == MAGIC && s.get(LONG, MEMORY_OFFSET) == memory
                    && s.get(LONG, DESC_OFFSET) == desc
                    && s.get(LONG, DRIVER_OFFSET) == driver && s.get(LONG, DEVICE_OFFSET) == device
                    && s.get(INT, SIZE_OFFSET) == size && s.get(INT, BASE_OFFSET) == base;
        }

        /** First position (slot | wrap &lt;&lt; 15) of the last batch. */
        int first() {
            return (int) (s.get(LONG, BATCH_OFFSET) & 0xFFFF);
        }

        /** Position after the last batch. */
        int after() {
            return (int) ((s.get(LONG, BATCH_OFFSET) >>> 16) & 0xFFFF);
        }

        /** Used descriptors in the last batch. */
        int count() {
            return (int) ((s.get(LONG, BATCH_OFFSET) >>> 32) & 0xFFFF);
        }

        int position(int i) {
            return (int) (entry(i) & 0xFFFF);
        }

        int id(int i) {
            return (int) ((entry(i) >>> 16) & 0xFFFF);
        }

        int len(int i) {
            return (int) (entry(i) >>> 32);
        }

        private long entry(int i) {
            return s.get(LONG, ENTRIES_OFFSET + 8L * i);
        }

        /** A start: the ring's identity, the base the front-end sent, and where the device resumes (no batch). */
        void begin(long memory, long desc, long driver, long device, int size, int base, int used) {
            s.set(LONG, MAGIC_OFFSET, 0);
            s.set(LONG, MEMORY_OFFSET, memory);
            s.set(LONG, DESC_OFFSET, desc);
            s.set(LONG, DRIVER_OFFSET, driver);
            s.set(LONG, DEVICE_OFFSET, device);
            s.set(INT, SIZE_OFFSET, size);
            s.set(INT, BASE_OFFSET, base);
            batch(used, used, 0);
            s.set(LONG, MAGIC_OFFSET, MAGIC);
        }

        /**
         * Before used descriptor {@code i} of a batch goes to the ring: the descriptor, then the
         * batch word (first position, position after this chain, {@code i + 1} descriptors).
         */
        void used(int i, int position, int id, int len, int first, int after) {
            s.set(LONG, ENTRIES_OFFSET + 8L * i, (long) len << 32 | (long) (id & 0xFFFF) << 16 | position);
            batch(first, after, i + 1);
        }

        private void batch(int first, int after, int count) {
            s.set(LONG, BATCH_OFFSET, (long) count << 32 | (long) after << 16 | first);
        }
    }
}
