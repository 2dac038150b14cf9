package io.jvhost.virtq;

/**
 * What a device ring is doing, as metrics and tools report it (vhost-user.rst, "Ring states": a
 * ring is stopped, or started and then disabled or enabled; broken is jvhost's own state for a ring
 * that stopped on a violation until the front-end restarts it).
 */
public enum RingState {
    STOPPED,
    /** Started but disabled: TX is consumed and dropped, RX receives nothing. */
    DISABLED,
    ENABLED,
    BROKEN;

    private static final RingState[] VALUES = values();

    public static RingState of(int ordinal) {
        return VALUES[ordinal];
    }
}
