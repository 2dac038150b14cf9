package io.jvhost.net;

import io.jvhost.nativ.Errno;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.nio.ByteOrder;

/**
 * Test helper: a connected UDP socket with {@code UDP_SEGMENT} (setsockopt SOL_UDP), which Java's
 * DatagramChannel cannot set: every {@link #send} of up to 64 KiB leaves as one UDP GSO skb that
 * the kernel cuts into {@code gsoSize}-byte datagrams at the last moment (or hands a USO-capable
 * tap whole). FFM downcalls with errno captured; failures throw with the call and errno name.
 * Create it inside a namespace with {@code Netns.in}; usable from any thread afterwards.
 */
final class UdpSegmentSocket implements AutoCloseable {
    private static final int AF_INET = 2;
    private static final int AF_INET6 = 10;
    private static final int SOCK_DGRAM = 2;
    private static final int SOCK_CLOEXEC = 0x80000;
    private static final int SOL_UDP = 17;
    /** linux/udp.h: the GSO segment size of every send on this socket. */
    private static final int UDP_SEGMENT = 103;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final MethodHandle SOCKET = downcall("socket",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    private static final MethodHandle SETSOCKOPT = downcall("setsockopt",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                    ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    private static final MethodHandle CONNECT = downcall("connect",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    private static final MethodHandle SEND = downcall("send",
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG,
                    ValueLayout.JAVA_INT));
    private static final MethodHandle CLOSE = downcall("close",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));

    @SuppressWarnings("restricted")
    private static MethodHandle downcall(String name, FunctionDescriptor d) {
        return LINKER.downcallHandle(LINKER.defaultLookup().find(name).orElseThrow(), d,
                Linker.Option.captureCallState("errno"));
    }

    private final Arena arena = Arena.ofShared();
    private final MemorySegment errno = arena.allocate(CAPTURE);
    private final int fd;

    private UdpSegmentSocket(int fd) {
        this.fd = fd;
    }

    /**
     * A UDP socket connected to {@code dst:port} whose sends are segmented into {@code gsoSize}-byte
     * datagrams (the kernel refuses a size whose datagrams would exceed the route's MTU).
     */
    static UdpSegmentSocket open(InetAddress dst, int port, int gsoSize) {
        boolean v6 = dst instanceof Inet6Address;
        UdpSegmentSocket s;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment err = a.allocate(CAPTURE);
            int fd = (int) SOCKET.invokeExact(err, v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            check(fd, err, "socket");
            s = new UdpSegmentSocket(fd);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
        try {
            s.connect(dst, port, v6);
            s.setSegment(gsoSize);
            return s;
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
    }

    private void connect(InetAddress dst, int port, boolean v6) {
        try (Arena a = Arena.ofConfined()) {
            // sockaddr_in / sockaddr_in6: family in host order, port and address in network order.
            MemorySegment sa = a.allocate(v6 ? 28 : 16);
            sa.set(ValueLayout.JAVA_SHORT, 0, (short) (v6 ? AF_INET6 : AF_INET));
            sa.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 2, (short) port);
            MemorySegment.copy(dst.getAddress(), 0, sa, ValueLayout.JAVA_BYTE, v6 ? 8 : 4, v6 ? 16 : 4);
            check((int) CONNECT.invokeExact(errno, fd, sa, (int) sa.byteSize()), errno, "connect " + dst + ":" + port);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    private void setSegment(int gsoSize) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocateFrom(ValueLayout.JAVA_INT, gsoSize);
            check((int) SETSOCKOPT.invokeExact(errno, fd, SOL_UDP, UDP_SEGMENT, v, Integer.BYTES), errno,
                    "setsockopt UDP_SEGMENT " + gsoSize);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /** Sends {@code data[off, off+len)} as one UDP GSO send; returns when the kernel took it. */
    void send(byte[] data, int off, int len) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.max(1, len));
            MemorySegment.copy(data, off, buf, ValueLayout.JAVA_BYTE, 0, len);
            long n = (long) SEND.invokeExact(errno, fd, buf, (long) len, 0);
            check(n < 0 ? -1 : 0, errno, "send " + len + " bytes");
            if (n != len) {
                throw new IllegalStateException("send: " + n + " of " + len + " bytes");
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    private static void check(int r, MemorySegment err, String call) {
        if (r < 0) {
            int e = (int) ERRNO.get(err, 0L);
            throw new IllegalStateException(call + ": " + Errno.name(e) + ": " + Errno.text(e));
        }
    }

    @Override
    public void close() {
        try {
            int ignored = (int) CLOSE.invokeExact(errno, fd);
        } catch (Throwable t) {
            // best effort
        }
        arena.close();
    }
}
