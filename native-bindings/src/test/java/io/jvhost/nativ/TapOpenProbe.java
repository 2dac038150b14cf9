package io.jvhost.nativ;

/**
 * Child-process entry for {@link TapIT}: opens a tap as whatever user the process runs as and
 * prints either {@code OK <ifname>} or {@code ERR <errno> <message>}. No test-framework classes, so
 * it runs with only the project's class directories on the class path.
 */
public final class TapOpenProbe {
    private TapOpenProbe() {
    }

    public static void main(String[] args) {
        try {
            int fd = Tun.openTap(args[0], Tun.IFF_TAP | Tun.IFF_NO_PI);
            System.out.println("OK " + Tun.ifName(fd));
            Fds.close(fd);
        } catch (NativeException e) {
            System.out.println("ERR " + e.errno() + " " + e.getMessage());
        }
    }
}
