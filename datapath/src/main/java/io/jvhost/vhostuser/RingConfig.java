package io.jvhost.vhostuser;

import io.jvhost.memory.GuestMemory;

/**
 * Everything a device needs to start one split virtqueue, as negotiated over vhost-user.
 * Addresses are front-end virtual ("user") addresses, as sent in VHOST_USER_SET_VRING_ADDR; the
 * session has checked that each structure lies wholly inside one region of {@code memory}.
 *
 * @param queueIndex vring index (even = RX, odd = TX for virtio-net)
 * @param size       ring size, a power of two in [1, 32768]
 * @param descAddr   user address of the descriptor table (16-byte aligned)
 * @param availAddr  user address of the available ring (2-byte aligned)
 * @param usedAddr   user address of the used ring (4-byte aligned)
 * @param logAddr    guest address for used-ring logging (unused: dirty logging is not offered)
 * @param flags      vring flags from SET_VRING_ADDR (0: logging is not offered)
 * @param baseIndex  available index to start from (SET_VRING_BASE or the last GET_VRING_BASE)
 * @param kickFd     kick eventfd, or {@code -1}: the ring is polled (VHOST_USER_VRING_NOFD_MASK)
 * @param callFd     call eventfd, or {@code -1}: none (yet)
 * @param errFd      error eventfd, or {@code -1}: none
 * @param enabled    whether the ring starts enabled
 * @param features   negotiated virtio features (EVENT_IDX, MRG_RXBUF, VERSION_1 ... decide the layout)
 * @param memory     the memory table current at start time
 */
public record RingConfig(int queueIndex, int size, long descAddr, long availAddr, long usedAddr, long logAddr,
                         int flags, int baseIndex, int kickFd, int callFd, int errFd, boolean enabled,
                         long features, GuestMemory memory) {

    /** True when the ring has no kick eventfd and must be polled. */
    public boolean polled() {
        return kickFd < 0;
    }
}
