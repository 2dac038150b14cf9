package io.jvhost.virtio;

/**
 * The virtio device status bits (virtio 1.2 §2.1), what a driver writes as it brings a device up
 * and what VHOST_USER_PROTOCOL_F_STATUS carries (SET_STATUS / GET_STATUS): one byte.
 */
public final class DeviceStatus {
    private DeviceStatus() {
    }

    public static final int ACKNOWLEDGE = 1;
    public static final int DRIVER = 2;
    public static final int DRIVER_OK = 4;
    public static final int FEATURES_OK = 8;
    public static final int DEVICE_NEEDS_RESET = 64;
    public static final int FAILED = 128;
    /** Every bit the status byte can hold. */
    public static final int MASK = 0xff;
}
