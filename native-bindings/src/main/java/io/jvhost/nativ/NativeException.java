package io.jvhost.nativ;

import java.io.Serial;

/**
 * A system call failed with an errno that is not "no progress" (EAGAIN is returned as
 * {@link Fds#WOULD_BLOCK}, EINTR is retried or reported as no progress).
 *
 * <p>Message shape: {@code call(context): ENAME: strerror text}, followed by {@code " — hint"} when
 * there is advice that helps the user (missing /dev/net/tun, missing CAP_NET_ADMIN, ...).
 *
 * <p>Exceptions from hot-path calls (read/write/readv/writev, eventfd, epoll_wait) are created
 * without a stack trace: their message already names the call and the fd, and a datapath that keeps
 * hitting e.g. EIO on a downed tap should not pay for stack walks.
 */
public final class NativeException extends RuntimeException {
    @Serial
    private static final long serialVersionUID = 1L;

    private final transient String call;
    private final int errno;

    NativeException(String call, String context, int errno, String hint, boolean stackTrace) {
        super(message(call, context, errno, hint), null, true, stackTrace);
        this.call = call;
        this.errno = errno;
    }

    /** An error with a stack trace (control-plane calls). */
    static NativeException of(String call, String context, int errno) {
        return new NativeException(call, context, errno, null, true);
    }

    /** An error with a stack trace and a hint for the user. */
    static NativeException of(String call, String context, int errno, String hint) {
        return new NativeException(call, context, errno, hint, true);
    }

    /** A hot-path error: no stack trace (the message names call and fd). */
    static NativeException fast(String call, int fd, int errno) {
        return new NativeException(call, "fd " + fd, errno, null, false);
    }

    /** The errno the call failed with. */
    public int errno() {
        return errno;
    }

    /** The C function that failed, e.g. {@code "writev"} or {@code "ioctl TUNSETIFF"}. */
    public String call() {
        return call;
    }

    /** Builds {@code call(context): ENAME: text[ — hint]}. Package-visible for tests. */
    static String message(String call, String context, int errno, String hint) {
        StringBuilder sb = new StringBuilder(96).append(call);
        if (context != null && !context.isEmpty()) {
            sb.append('(').append(context).append(')');
        }
        sb.append(": ").append(Errno.name(errno)).append(": ").append(Errno.text(errno));
        if (hint != null && !hint.isEmpty()) {
            sb.append(" — ").append(hint);
        }
        return sb.toString();
    }
}
