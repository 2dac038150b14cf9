package io.jvhost.vhostuser;

/**
 * A request the back-end refuses (bad size, fd count, index, addresses, unsupported request...).
 * Nothing of the request has been applied when this is thrown. The session answers it with a
 * non-zero REPLY_ACK when the front-end asked for one, and otherwise closes the connection.
 */
public final class ProtocolException extends Exception {
    private static final long serialVersionUID = 1L;

    public ProtocolException(String message) {
        super(message);
    }
}
