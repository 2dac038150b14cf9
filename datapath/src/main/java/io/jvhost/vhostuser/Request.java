package io.jvhost.vhostuser;

/**
 * One row of the session's dispatch table: how a front-end request is validated before its handler
 * runs, and whether it answers with a reply of its own. Adding a message is one row and one handler.
 *
 * @param code     request code ({@link VhostUserMessage} constants)
 * @param sizes    the payload sizes accepted, or null when the handler checks the size itself
 * @param minFds   fewest fds that may come with it
 * @param maxFds   most fds that may come with it
 * @param feature  the protocol feature bit that must be offered, or {@link #NO_FEATURE}
 * @param reply    whether the request has a reply of its own (then never a REPLY_ACK as well)
 * @param handler  applies it (throws {@link ProtocolException} to reject it)
 */
record Request(int code, int[] sizes, int minFds, int maxFds, int feature, Reply reply, Handler handler) {

    /** {@link #feature}: no protocol feature needed. */
    static final int NO_FEATURE = -1;

    /** The work of one request, run on the session's control thread. */
    @FunctionalInterface
    interface Handler {
        void handle() throws ProtocolException, VhostUserCodec.StreamException;
    }

    /** Whether a request answers with a reply of its own, given the negotiated protocol features. */
    @FunctionalInterface
    interface Reply {
        Reply NEVER = acked -> false;
        Reply ALWAYS = acked -> true;

        boolean replies(long ackedProtocolFeatures);

        /** Replies only when protocol feature {@code bit} was negotiated (e.g. SET_LOG_BASE with LOG_SHMFD). */
        static Reply whenNegotiated(int bit) {
            return acked -> (acked & (1L << bit)) != 0;
        }
    }

    String name() {
        return VhostUserMessage.requestName(code);
    }

    /** Null when {@code size} and {@code fds} fit this row, else why not. */
    String check(int size, int fds) {
        if (sizes != null) {
            boolean ok = false;
            for (int s : sizes) {
                ok |= s == size;
            }
            if (!ok) {
                StringBuilder b = new StringBuilder("payload size ").append(size).append(", expected ");
                for (int i = 0; i < sizes.length; i++) {
                    b.append(i == 0 ? "" : " or ").append(sizes[i]);
                }
                return b.toString();
            }
        }
        if (fds < minFds || fds > maxFds) {
            String want = minFds == maxFds ? Integer.toString(minFds)
                    : minFds == 0 ? "at most " + maxFds : minFds + ".." + maxFds;
            return fds + " fds attached, expected " + want;
        }
        return null;
    }
}
