package io.jvhost.vhostuser;

import static io.jvhost.vhostuser.VhostUserMessage.FLAGS_OFFSET;
import static io.jvhost.vhostuser.VhostUserMessage.HEADER_SIZE;
import static io.jvhost.vhostuser.VhostUserMessage.MAX_FDS;
import static io.jvhost.vhostuser.VhostUserMessage.MAX_PAYLOAD;
import static io.jvhost.vhostuser.VhostUserMessage.REQUEST_OFFSET;
import static io.jvhost.vhostuser.VhostUserMessage.SIZE_OFFSET;
import static io.jvhost.vhostuser.VhostUserMessage.U32;
import static io.jvhost.vhostuser.VhostUserMessage.U64;

import io.jvhost.nativ.Fds;
import io.jvhost.nativ.NativeException;
import io.jvhost.nativ.Poll;
import io.jvhost.nativ.UnixSocket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Reads and writes vhost-user messages on a connected unix socket, both directions (the back-end's
 * {@link Session} and the front-end {@code VhostUserClient} share it). One received message at a time
 * lives in a reusable native buffer together with the fds that came with it (SCM_RIGHTS).
 *
 * <p>Fd ownership: fds of the current message belong to the codec until taken with {@link #takeFd};
 * {@link #closeFds()} closes what was not taken (call it after handling every message, also on error),
 * and reading the next message does so too. Nothing received is ever leaked.
 *
 * <p>Not thread-safe: one codec per connection, used by one thread at a time.
 */
public final class VhostUserCodec implements AutoCloseable {

    /** Outcome of {@link #read}. */
    public enum ReadResult {
        /** A whole message is in the buffer. */
        MESSAGE,
        /** The peer closed the connection cleanly between messages. */
        EOF
    }

    /** The stream cannot be trusted any more (oversized message, EOF mid-message, timeout): close the connection. */
    public static final class StreamException extends Exception {
        private static final long serialVersionUID = 1L;

        public StreamException(String message) {
            super(message);
        }
    }

    private final int fd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment rx = arena.allocate(HEADER_SIZE + MAX_PAYLOAD, 8);
    private final MemorySegment tx = arena.allocate(HEADER_SIZE + MAX_PAYLOAD, 8);
    private final int[] recvFds = new int[MAX_FDS];
    private final int[] fds = new int[MAX_FDS];
    private int fdCount;
    /** More fds arrived than a message may carry; the extras were closed. */
    private boolean fdOverflow;
    private int request;
    private int flags;
    private int size;

    public VhostUserCodec(int fd) {
        this.fd = fd;
        Arrays.fill(fds, -1);
    }

    public int fd() {
        return fd;
    }

    /**
     * Reads one message (header, then payload) into the buffer. Call when the socket is readable;
     * a message that starts must complete within {@code timeoutMs}.
     *
     * @throws StreamException on EOF mid-message, an oversized payload or a timeout
     */
    public ReadResult read(int timeoutMs) throws StreamException {
        closeFds();
        fdOverflow = false;
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        int got = readFully(0, HEADER_SIZE, deadline, true);
        if (got == 0) {
            return ReadResult.EOF;
        }
        request = rx.get(U32, REQUEST_OFFSET);
        flags = rx.get(U32, FLAGS_OFFSET);
        size = rx.get(U32, SIZE_OFFSET);
        if (size < 0 || size > MAX_PAYLOAD) {
            throw new StreamException(VhostUserMessage.requestName(request) + ": payload size "
                    + Integer.toUnsignedString(size) + " exceeds the largest message (" + MAX_PAYLOAD + " bytes)");
        }
        if (size > 0) {
            readFully(HEADER_SIZE, size, deadline, false);
        }
        return ReadResult.MESSAGE;
    }

    /** Returns bytes read; 0 only if EOF before the first byte and {@code eofOk}. */
    private int readFully(int offset, int len, long deadline, boolean eofOk) throws StreamException {
        int done = 0;
        while (done < len) {
            long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
            // FdPoller, not poll(2): on a virtual thread a native wait would pin the carrier.
            if (leftMs <= 0 || !FdPoller.await(fd, Poll.POLLIN, leftMs)) {
                if (System.nanoTime() - deadline >= 0) {
                    throw new StreamException("timed out in the middle of a message (" + done + " of " + len
                            + " bytes)");
                }
                continue;
            }
            Arrays.fill(recvFds, -1);
            long n;
            try {
                n = UnixSocket.recv(fd, rx.asSlice(offset + done, len - done), len - done, recvFds);
            } catch (NativeException e) {
                throw new StreamException("recv failed: " + e.getMessage());
            }
            collectFds();
            if (n == 0) {
                if (done == 0 && eofOk) {
                    return 0;
                }
                throw new StreamException("peer closed the connection in the middle of a message");
            }
            if (n == Fds.WOULD_BLOCK) {
                continue;
            }
            done += (int) n;
        }
        return done;
    }

    private void collectFds() {
        for (int received : recvFds) {
            if (received < 0) {
                continue;
            }
            if (fdCount < MAX_FDS) {
                fds[fdCount++] = received;
            } else {
                fdOverflow = true;
                closeQuietly(received);
            }
        }
    }

    public int request() {
        return request;
    }

    public int flags() {
        return flags;
    }

    public int size() {
        return size;
    }

    public boolean needReply() {
        return (flags & VhostUserMessage.FLAG_NEED_REPLY) != 0;
    }

    /** The payload of the current message ({@link #size()} bytes). */
    public MemorySegment payload() {
        return rx.asSlice(HEADER_SIZE, size);
    }

    public int payloadInt(int offset) {
        return rx.get(U32, HEADER_SIZE + offset);
    }

    public long payloadLong(int offset) {
        return rx.get(U64, HEADER_SIZE + offset);
    }

    public int fdCount() {
        return fdCount;
    }

    /** Whether more than {@link VhostUserMessage#MAX_FDS} fds came with the message. */
    public boolean fdOverflow() {
        return fdOverflow;
    }

    /** Fd {@code i} of the current message, still owned by the codec (to inspect it before deciding to take it). */
    public int fdAt(int i) {
        if (i >= fdCount || fds[i] < 0) {
            throw new IllegalStateException("fd " + i + " not present");
        }
        return fds[i];
    }

    /** Takes ownership of fd {@code i}: the codec will not close it. */
    public int takeFd(int i) {
        if (i >= fdCount || fds[i] < 0) {
            throw new IllegalStateException("fd " + i + " not present");
        }
        int f = fds[i];
        fds[i] = -1;
        return f;
    }

    /** Closes every fd of the current message that was not taken. */
    public void closeFds() {
        for (int i = 0; i < fdCount; i++) {
            if (fds[i] >= 0) {
                closeQuietly(fds[i]);
                fds[i] = -1;
            }
        }
        fdCount = 0;
    }

    // ---------------- sending ----------------

    /** The payload area of the send buffer; fill it, then {@link #send}. */
    public MemorySegment txPayload() {
        return tx.asSlice(HEADER_SIZE, MAX_PAYLOAD);
    }

    /** Sends header + the first {@code payloadSize} bytes of {@link #txPayload()} with optional fds, in one sendmsg. */
    public void send(int req, int msgFlags, int payloadSize, int[] sendFds) throws StreamException {
        if (payloadSize < 0 || payloadSize > MAX_PAYLOAD) {
            throw new IllegalArgumentException("payload size " + payloadSize);
        }
        tx.set(U32, REQUEST_OFFSET, req);
        tx.set(U32, FLAGS_OFFSET, msgFlags);
        tx.set(U32, SIZE_OFFSET, payloadSize);
        sendRaw(HEADER_SIZE + payloadSize, sendFds);
    }

    /** Sends the first {@code len} bytes of the send buffer as they are (tests build malformed messages with this). */
    public void sendRaw(int len, int[] sendFds) throws StreamException {
        int done = 0;
        int[] attach = sendFds != null && sendFds.length > 0 ? sendFds : null;
        while (done < len) {
            long n;
            try {
                n = UnixSocket.send(fd, tx.asSlice(done, len - done), len - done, attach);
            } catch (NativeException e) {
                throw new StreamException("send failed: " + e.getMessage());
            }
            if (n == Fds.WOULD_BLOCK) {
                if (!FdPoller.await(fd, Poll.POLLOUT, 1000)) {
                    throw new StreamException("send timed out");
                }
                continue;
            }
            done += (int) n;
            attach = null; // ancillary data goes with the first byte only
        }
    }

    /** Whole send buffer (header included) for raw, possibly malformed, messages. */
    public MemorySegment txBuffer() {
        return tx;
    }

    /** Sends a reply to the current request: REPLY flag, version 1. */
    public void reply(int payloadSize) throws StreamException {
        send(request, VhostUserMessage.VERSION | VhostUserMessage.FLAG_REPLY, payloadSize, null);
    }

    /** Sends a u64 reply (REPLY_ACK status or a u64 answer). */
    public void replyU64(long value) throws StreamException {
        tx.set(U64, HEADER_SIZE, value);
        reply(VhostUserMessage.U64_SIZE);
    }

    static void closeQuietly(int f) {
        if (f < 0) {
            return;
        }
        try {
            Fds.close(f);
        } catch (RuntimeException e) {
            // closing a received fd can only fail with EBADF/EINTR; the fd is gone either way
        }
    }

    /** Closes untaken fds and frees the buffers; does not close the socket. */
    @Override
    public void close() {
        closeFds();
        arena.close();
    }
}
