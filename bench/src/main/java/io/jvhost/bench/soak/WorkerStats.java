package io.jvhost.bench.soak;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * jvhost's own counters, summed over its queue pairs, from its stats socket
 * ({@code <socket-path>.stats}: send {@code "json\n"}, read to EOF), so that a soak interval in
 * which no frame reached the tap can be told apart: the worker was kicked or woken and moved
 * nothing (a stall), or no kick came (the front-end was not running). -1 when unreadable.
 */
record WorkerStats(long txFrames, long txKicks, long wakeups) {
    static final WorkerStats NONE = new WorkerStats(-1, -1, -1);

    static WorkerStats read(Path statsSocket) {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(statsSocket));
            ch.write(ByteBuffer.wrap("json\n".getBytes(StandardCharsets.US_ASCII)));
            StringBuilder sb = new StringBuilder();
            ByteBuffer buf = ByteBuffer.allocate(16384);
            while (ch.read(buf) >= 0) {
                buf.flip();
                sb.append(StandardCharsets.UTF_8.decode(buf));
                buf.clear();
            }
            String json = sb.toString();
            return new WorkerStats(sum(json, "tx_frames"), sum(json, "tx_kicks"), sum(json, "wakeups"));
        } catch (IOException | RuntimeException e) {
            return NONE;
        }
    }

    private static long sum(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\":(\\d+)").matcher(json);
        long total = 0;
        boolean any = false;
        while (m.find()) {
            total += Long.parseLong(m.group(1));
            any = true;
        }
        return any ? total : -1;
    }
}
