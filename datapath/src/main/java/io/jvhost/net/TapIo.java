package io.jvhost.net;

import io.jvhost.config.Configuration;
import io.jvhost.nativ.IoUring;

/**
 * How the engines move frames through the tap: one {@code writev}/{@code readv} system call per
 * frame ({@link #SYSCALLS}), or a whole TX batch as io_uring WRITEV submissions with one
 * {@code io_uring_enter} ({@link #URING}).
 *
 * <p>{@link Configuration#TAP_IO} ({@code --tap-io}, property {@code jvhost.tap.io}) = {@code uring} | {@code syscalls}; default {@link #DEFAULT}
 * (io_uring: ≈ 12 % more frames per CPU on TX, see bench/RESULTS-perf.md). When io_uring is asked for but the
 * kernel or a seccomp filter refuses it (ENOSYS, EPERM, {@code kernel.io_uring_disabled}), the
 * engines fall back to system calls and say so once in the log.
 */
public enum TapIo {
    SYSCALLS,
    URING;

    public static final String PROP_NAME = Configuration.TAP_IO.property();
    public static final TapIo DEFAULT = URING;

    private static final System.Logger LOG = System.getLogger(TapIo.class.getName());
    private static volatile boolean fallbackLogged;
    private static volatile boolean uringLogged;

    /** The configured mode (property or default), before the availability check. */
    public static TapIo configured() {
        return Configuration.TAP_IO.get().equals("syscalls") ? SYSCALLS : URING;
    }

    /** The mode to use: {@link #configured()}, or SYSCALLS when io_uring is unavailable (logged once). */
    public static TapIo effective() {
        TapIo m = configured();
        if (m == URING) {
            String why = IoUring.unavailableReason();
            if (why != null) {
                if (!fallbackLogged) {
                    fallbackLogged = true;
                    LOG.log(System.Logger.Level.WARNING, "{0}=uring but io_uring is unavailable ({1}); "
                            + "using one system call per frame (lower throughput): allow io_uring (sysctl"
                            + " kernel.io_uring_disabled=0, no seccomp filter on it) or pass --tap-io=syscalls"
                            + " to accept it", PROP_NAME, why);
                }
                return SYSCALLS;
            }
            if (!uringLogged) {
                uringLogged = true;
                LOG.log(System.Logger.Level.INFO, "tap TX through io_uring ({0}=uring)", PROP_NAME);
            }
        }
        return m;
    }
}
