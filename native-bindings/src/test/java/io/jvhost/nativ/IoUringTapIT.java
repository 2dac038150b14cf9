package io.jvhost.nativ;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.concurrent.ThreadLocalRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * What io_uring READV/WRITEV do on a non-blocking tap queue fd, which the tap I/O mode relies on:
 * an empty tap completes a NOWAIT read with -EAGAIN at once, a down tap fails a write with -EIO,
 * an up tap takes a batch of writes in one enter. The tap is created (random name, not
 * persistent) and closed in a finally block.
 */
@Tag("privileged")
@Timeout(30)
class IoUringTapIT {
    @Test
    void tapReadvWritevSemantics() {
        assumeTrue(Files.exists(Path.of(Tun.DEVICE)), "no " + Tun.DEVICE);
        String why = IoUring.unavailableReason();
        assumeTrue(why == null, "io_uring unavailable: " + why);
        String name = "jvu" + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt()).substring(2);
        int fd = Tun.openTap(name, Tun.IFF_TAP | Tun.IFF_NO_PI | Tun.IFF_VNET_HDR);
        try (Arena arena = Arena.ofConfined(); IoUring ring = IoUring.create(16)) {
            Fds.setNonBlocking(fd, true);
            Tun.setVnetHdrSize(fd, 12);
            MemorySegment buf = arena.allocate(2048);
            MemorySegment iov = Iovec.allocate(arena, 1);
            Iovec.set(iov, 0, buf.address(), 2048);
            // Nothing queued: -EAGAIN in the CQE during the same enter.
            assertTrue(ring.prepare(IoUring.OP_READV, fd, iov.address(), 1, 0, IoUring.RWF_NOWAIT, 1));
            assertEquals(1, ring.submit(0));
            assertEquals(1, ring.completions());
            assertEquals(-Errno.EAGAIN, ring.cqeRes(0));
            ring.consume(1);
            // A frame (zero vnet header, broadcast ARP-sized) to a down tap: -EIO.
            Iovec.set(iov, 0, buf.address(), 12 + 60);
            buf.fill((byte) 0);
            buf.asSlice(12, 6).fill((byte) 0xff);
            assertTrue(ring.prepare(IoUring.OP_WRITEV, fd, iov.address(), 1, 0, IoUring.RWF_NOWAIT, 2));
            assertEquals(1, ring.submit(0));
            assertEquals(1, ring.completions());
            assertEquals(-Errno.EIO, ring.cqeRes(0));
            ring.consume(1);
            ip("link", "set", name, "up");
            for (int i = 0; i < 8; i++) {
                assertTrue(ring.prepare(IoUring.OP_WRITEV, fd, iov.address(), 1, IoUring.SQE_IO_LINK,
                        IoUring.RWF_NOWAIT, 10 + i));
            }
            assertEquals(8, ring.submit(0));
            int got = ring.completions();
            if (got < 8) {
                ring.submit(8 - got);
            }
            assertEquals(8, ring.completions());
            for (int i = 0; i < 8; i++) {
                assertEquals(10 + i, ring.cqeUserData(i));
                assertEquals(72, ring.cqeRes(i));
            }
            ring.consume(8);
        } finally {
            Fds.close(fd); // not persistent: the tap goes with its last fd
        }
    }

    private static void ip(String... args) {
        try {
            String[] cmd = new String[args.length + 1];
            cmd[0] = "ip";
            System.arraycopy(args, 0, cmd, 1, args.length);
            Process p = new ProcessBuilder(cmd).inheritIO().start();
            assertEquals(0, p.waitFor());
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
