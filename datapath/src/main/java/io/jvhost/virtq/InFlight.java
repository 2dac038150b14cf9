package io.jvhost.virtq;

/**
 * The chains a device queue has taken and not yet completed, in the order taken: what
 * {@link DeviceQueue#rewind} and {@link DeviceQueue#returnInFlight} need, and, for formats that
 * need it, how many ring slots each chain occupied. Ids are whatever the format uses (split: head
 * index; packed: buffer id).
 *
 * <p>Completions normally come oldest first ({@link #complete} is then O(1)); one that does not
 * (an RX chain returned unused while older ones wait for a frame) is found by a scan and marked,
 * and the queue is then "out of order" until nothing is in flight: the chains in flight are then
 * no longer the last ones taken, so they cannot be given back by rewinding.
 *
 * <p>Threading: owned by the queue's worker. Allocation only in {@link #ensureCapacity} (ring set-up).
 */
final class InFlight {
    private static final int DONE = -1;

    private int[] ids = new int[0];
    private int[] slots = new int[0];
    private int mask = -1;
    /** Sequence numbers (free running): oldest entry, next entry. */
    private int head;
    private int tail;
    /** Entries between head and tail not completed. */
    private int live;
    private boolean outOfOrder;

    /** Room for {@code chains} chains in flight (the ring size bounds them). Control path. */
    void ensureCapacity(int chains) {
        int cap = Integer.highestOneBit(Math.max(1, chains - 1)) << 1;
        if (ids.length < cap) {
            ids = new int[cap];
            slots = new int[cap];
            mask = cap - 1;
        }
        clear();
    }

    void clear() {
        head = 0;
        tail = 0;
        live = 0;
        outOfOrder = false;
    }

    /** Chains in flight. */
    int count() {
        return live;
    }

    /** Whether some chain taken after the oldest one in flight has been completed. */
    boolean outOfOrder() {
        return outOfOrder;
    }

    /** Records a chain just taken. */
    void push(int id, int ringSlots) {
        if (tail - head > mask) {
            // Full of records, some of them completed out of order behind a chain still in flight
            // (the ring reuses their slots): squeeze those out. Only with every record live (a
            // device bug: takes are bounded by the ring) is the oldest dropped rather than overwritten.
            if (live <= mask) {
                compact();
            } else {
                pop();
            }
        }
        ids[tail & mask] = id;
        slots[tail & mask] = ringSlots;
        tail++;
        live++;
    }

    /**
     * Completes chain {@code id}.
     *
     * @return the ring slots it occupied, or -1 when no such chain is in flight
     */
    int complete(int id) {
        if (live == 0) {
            return -1;
        }
        int at = head & mask;
        if (ids[at] == id) {
            int s = slots[at];
            pop();
            return s;
        }
        for (int seq = head + 1; seq != tail; seq++) {
            int i = seq & mask;
            if (ids[i] == id) {
                ids[i] = DONE;
                live--;
                outOfOrder = true;
                return slots[i];
            }
        }
        return -1;
    }

    /** Moves the live records together, oldest first, dropping the completed ones between them. */
    private void compact() {
        int w = head;
        for (int seq = head; seq != tail; seq++) {
            int i = seq & mask;
            if (ids[i] != DONE) {
                int j = w & mask;
                ids[j] = ids[i];
                slots[j] = slots[i];
                w++;
            }
        }
        tail = w;
    }

    /** Removes the oldest entry and any completed ones behind it. */
    private void pop() {
        head++;
        live--;
        while (head != tail && ids[head & mask] == DONE) {
            head++;
        }
        if (live == 0) {
            head = tail;
            outOfOrder = false;
        }
    }

    /**
     * Forgets the newest {@code n} entries (they were given back to the ring).
     *
     * @return the ring slots they occupied
     */
    int popNewest(int n) {
        int total = 0;
        for (int k = 0; k < n && tail != head; k++) {
            tail--;
            int i = tail & mask;
            if (ids[i] != DONE) {
                live--;
            }
            total += slots[i];
        }
        if (live == 0) {
            head = tail;
            outOfOrder = false;
        }
        return total;
    }

    /** The id of the oldest chain still in flight ({@link #count()} &gt; 0). O(1). */
    int oldest() {
        return ids[head & mask];
    }

    /**
     * The id of the {@code k}-th newest entry (0: the last taken), or -1 when that entry was
     * already completed out of order. {@code k} &lt; entries between oldest and newest.
     */
    int idFromNewest(int k) {
        int id = ids[(tail - 1 - k) & mask];
        return id == DONE ? -1 : id;
    }

    /** The id of the {@code k}-th oldest chain still in flight (0 ≤ k < {@link #count()}). */
    int idAt(int k) {
        for (int seq = head; seq != tail; seq++) {
            int id = ids[seq & mask];
            if (id != DONE && k-- == 0) {
                return id;
            }
        }
        throw new IndexOutOfBoundsException(k);
    }
}
