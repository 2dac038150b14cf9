package io.jvhost.driver;

import io.jvhost.virtq.PackedDesc;
import io.jvhost.virtq.PackedEvent;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * A minimal packed-ring device for the driver's tests, written from virtio 1.2 §2.8 and independent
 * of the driver's code: takes available chains in ring order with its own wrap counter and writes
 * used descriptors (one per buffer, or one for an IN_ORDER batch) at its own used position.
 */
final class PackedDevice {
    /** One available buffer: its id, the ring slots it took, and its descriptors (addr, len, flags). */
    record Buffer(int id, int slots, List<long[]> descs) {
    }

    private final MemorySegment ring;
    private final MemorySegment driverArea;
    private final MemorySegment deviceArea;
    private final int size;
    int availPos;
    boolean availWrap;
    int usedPos;
    boolean usedWrap;
    /** Used position before the last {@link #use}/{@link #useBatch}, for notification checks. */
    int oldUsedPos;
    boolean oldUsedWrap;

    PackedDevice(PackedDriverQueue q, int startSlot, boolean startWrap) {
        this.ring = q.descRing();
        this.driverArea = q.driverArea();
        this.deviceArea = q.deviceArea();
        this.size = q.size();
        this.availPos = startSlot;
        this.usedPos = startSlot;
        this.availWrap = startWrap;
        this.usedWrap = startWrap;
    }

    /** The next available buffer, or null. */
    Buffer take() {
        int flags = PackedDesc.flagsAcquire(ring, PackedDesc.offset(availPos));
        if (!PackedDesc.isAvail(flags, availWrap)) {
            return null;
        }
        List<long[]> descs = new ArrayList<>();
        int slots = 0;
        int id;
        while (true) {
            long off = PackedDesc.offset(availPos);
            int f = PackedDesc.flags(ring, off);
            if (!PackedDesc.isAvail(f, availWrap)) {
                throw new AssertionError("chain member at slot " + availPos + " not available: flags 0x" + Integer.toHexString(f));
            }
            descs.add(new long[] {PackedDesc.addr(ring, off), Integer.toUnsignedLong(PackedDesc.len(ring, off)), f});
            id = PackedDesc.id(ring, off);
            slots++;
            if (++availPos == size) {
                availPos = 0;
                availWrap = !availWrap;
            }
            if ((f & PackedDesc.F_NEXT) == 0) {
                break;
            }
            if (slots > size) {
                throw new AssertionError("chain longer than the ring");
            }
        }
        return new Buffer(id, slots, descs);
    }

    /** Writes one used descriptor for {@code b} with {@code len} bytes written. */
    void use(Buffer b, int len) {
        useBatch(b.id(), len, b.slots());
    }

    /** One used descriptor naming {@code id}, then skips {@code slots} (a whole IN_ORDER batch). */
    void useBatch(int id, int len, int slots) {
        oldUsedPos = usedPos;
        oldUsedWrap = usedWrap;
        long off = PackedDesc.offset(usedPos);
        PackedDesc.putUsed(ring, off, id, len);
        PackedDesc.flagsRelease(ring, off, PackedDesc.usedFlags(usedWrap));
        usedPos += slots;
        if (usedPos >= size) {
            usedPos -= size;
            usedWrap = !usedWrap;
        }
    }

    /** Whether the driver asked for a call for the last {@link #useBatch} (DPDK's vhost_vring_call_packed). */
    boolean callWanted(boolean eventIdx) {
        int flags = PackedEvent.flagsAcquire(driverArea);
        if (flags != PackedEvent.FLAG_DESC || !eventIdx) {
            return flags != PackedEvent.FLAG_DISABLE;
        }
        int offWrap = PackedEvent.offWrap(driverArea);
        int off = offWrap & PackedEvent.OFF_MASK;
        int nw = usedPos;
        int old = oldUsedPos;
        if (nw <= old) {
            old -= size;
        }
        if (((offWrap >>> PackedEvent.WRAP_SHIFT) != 0) != usedWrap) {
            off -= size;
        }
        return ((nw - off - 1) & 0xffff) < ((nw - old) & 0xffff);
    }

    /** Sets the device's event suppression (what the driver reads before kicking). */
    void setDeviceEvent(int offWrap, int flags) {
        PackedEvent.set(deviceArea, offWrap, flags);
    }
}
