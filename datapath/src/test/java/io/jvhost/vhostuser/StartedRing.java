package io.jvhost.vhostuser;

import io.jvhost.memory.GuestMemory;
import io.jvhost.virtq.RingSetup;

/**
 * What a test device records of a {@link DeviceBackend#startRing} call: the vring index, the setup
 * and the memory table that was current when the ring started.
 */
public record StartedRing(int queueIndex, RingSetup setup, GuestMemory memory) {
    public int size() {
        return setup.size();
    }

    public long descAddr() {
        return setup.desc();
    }

    public long availAddr() {
        return setup.driver();
    }

    public long usedAddr() {
        return setup.device();
    }

    public int baseIndex() {
        return setup.base();
    }

    public int kickFd() {
        return setup.kickFd();
    }

    public int callFd() {
        return setup.callFd();
    }

    public int errFd() {
        return setup.errFd();
    }

    public boolean enabled() {
        return setup.enabled();
    }

    public boolean polled() {
        return setup.polled();
    }

    public long features() {
        return setup.features();
    }
}
