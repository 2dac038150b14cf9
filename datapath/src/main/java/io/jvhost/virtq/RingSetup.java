package io.jvhost.virtq;

/**
 * Everything a device needs to start one virtqueue, as the front-end configured it: the same
 * record goes from the vhost-user session through the device to the worker that owns the ring.
 * Addresses are front-end virtual addresses ({@code SET_VRING_ADDR}); the session has checked size,
 * base and alignment against {@link RingLayout#of(long) the format} and that each area lies in
 * one region of the current memory table.
 *
 * @param size         ring size (valid for the format)
 * @param desc         descriptor area
 * @param driver       driver area (split: available ring; packed: driver event suppression)
 * @param device       device area (split: used ring; packed: device event suppression)
 * @param base         where processing resumes, in the format's vhost-user encoding
 * @param features     negotiated virtio features (format, EVENT_IDX, INDIRECT, IN_ORDER, header size ...)
 * @param logUsed      VHOST_VRING_F_LOG: writes to the device area are logged at {@code logGuestAddr}
 * @param logGuestAddr guest-physical address of the device area for dirty logging
 * @param kickFd       kick eventfd, or -1: the ring is polled (VHOST_USER_VRING_NOFD_MASK)
 * @param callFd       call eventfd, or -1: none (yet)
 * @param errFd        error eventfd, or -1: none
 * @param enabled      whether the ring starts enabled
 */
public record RingSetup(int size, long desc, long driver, long device, int base, long features, boolean logUsed,
                        long logGuestAddr, int kickFd, int callFd, int errFd, boolean enabled) {

    /** The ring format the features select. */
    public RingLayout layout() {
        return RingLayout.of(features);
    }

    /** True when the ring has no kick eventfd and must be polled. */
    public boolean polled() {
        return kickFd < 0;
    }
}
