package io.jvhost.net;

import io.jvhost.device.NetDevice;
import io.jvhost.driver.DriverMemory;
import io.jvhost.driver.VhostUserClient;
import io.jvhost.vhostuser.FeatureSet;
import io.jvhost.vhostuser.VhostUserMessage;
import io.jvhost.vhostuser.VhostUserServer;
import io.jvhost.driver.net.GuestNic;
import io.jvhost.driver.net.GuestStack;
import io.jvhost.driver.net.Packets;
import io.jvhost.engine.WorkerConfig;

/**
 * Test fixture: a network namespace with the device's tap in it (host side 10.99.N.1/24), a
 * {@link NetDevice} in this process and the Java guest (10.99.N.2) attached in-process.
 * {@link #close()} removes everything, also after failures.
 */
public final class TapFixture implements AutoCloseable {
    public final String ns;
    public final String tapName;
    public final int subnet;
    public final int hostIp;
    public final int guestIp;
    public final NetDevice device;
    public final DriverMemory mem;
    public final GuestNic nic;
    public final GuestStack stack;

    /** Set when the guest talks to the device over vhost-user. */
    public final VhostUserServer server;
    public final VhostUserClient client;

    public TapFixture(int queuePairs, long guestFeatures, int mtu, int ringSize, int maxTxFrame, WorkerConfig wc) {
        this(queuePairs, guestFeatures, mtu, ringSize, maxTxFrame, wc, false);
    }

    /** @param vhostUser drive the device through a vhost-user socket (memfd RAM) instead of in-process */
    public TapFixture(int queuePairs, long guestFeatures, int mtu, int ringSize, int maxTxFrame, WorkerConfig wc,
                      boolean vhostUser) {
        this(queuePairs, guestFeatures, mtu, ringSize, maxTxFrame, wc, vhostUser, c -> c);
    }

    /** @param tweak adjusts the device configuration (e.g. {@code c -> c.withCapture(path)}) */
    public TapFixture(int queuePairs, long guestFeatures, int mtu, int ringSize, int maxTxFrame, WorkerConfig wc,
                      boolean vhostUser, java.util.function.UnaryOperator<NetDevice.Config> tweak) {
        String sfx = Sh.suffix();
        this.ns = "jvns" + sfx;
        this.tapName = "jvt" + sfx;
        this.subnet = 100 + (int) (Math.random() * 150);
        this.hostIp = Packets.ip(10, 99, subnet, 1);
        this.guestIp = Packets.ip(10, 99, subnet, 2);
        NetDevice d = null;
        DriverMemory m = null;
        GuestNic n = null;
        VhostUserServer srv = null;
        VhostUserClient cl = null;
        try {
            Sh.run("ip", "netns", "add", ns);
            // No IPv6 in the namespace: its router solicitations and MLD reports would reach the
            // guest at random moments in the first seconds and stand in front of a test's frame.
            Sh.run("ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6;"
                    + " echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6");
            d = new NetDevice(tweak.apply(NetDevice.Config.of("t" + sfx, tapName, queuePairs).withMtu(mtu).withWorker(wc)));
            Sh.run("ip", "link", "set", tapName, "netns", ns);
            Sh.run("ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/" + tapName + "/disable_ipv6");
            Sh.run("ip", "-n", ns, "link", "set", tapName, "mtu", Integer.toString(mtu), "up");
            Sh.run("ip", "-n", ns, "addr", "add", Packets.ipString(hostIp) + "/24", "dev", tapName);
            Sh.run("ip", "-n", ns, "link", "set", "lo", "up");
            long ram = GuestNic.ramNeeded(queuePairs, ringSize, maxTxFrame, guestFeatures);
            m = vhostUser ? DriverMemory.memfd("guest-" + sfx, ram, DriverMemory.DEFAULT_GPA_BASE)
                    : DriverMemory.allocate(ram, DriverMemory.DEFAULT_GPA_BASE);
            n = new GuestNic(m, queuePairs, guestFeatures, ringSize, maxTxFrame);
            if (vhostUser) {
                String sock = "/tmp/jvhost-it-" + sfx + ".sock";
                srv = VhostUserServer.listen("t" + sfx, sock, d, FeatureSet.all());
                cl = VhostUserClient.connect(sock);
                n.attachVhostUser(cl, VhostUserMessage.PROTOCOL_SUPPORTED);
            } else {
                n.attach(d, m.guestMemory(1));
            }
        } catch (RuntimeException | Error e) {
            closeQuietly(cl, srv);
            cleanup(d, m, n);
            throw e;
        }
        this.server = srv;
        this.client = cl;
        this.device = d;
        this.mem = m;
        this.nic = n;
        this.stack = new GuestStack(n, new byte[]{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, guestIp);
    }

    public String nsExec(String... cmd) {
        String[] full = new String[cmd.length + 4];
        full[0] = "ip";
        full[1] = "netns";
        full[2] = "exec";
        full[3] = ns;
        System.arraycopy(cmd, 0, full, 4, cmd.length);
        return Sh.run(full);
    }

    private void cleanup(NetDevice d, DriverMemory m, GuestNic n) {
        try {
            if (d != null) {
                d.close();
            }
        } catch (RuntimeException ignored) {
            // best effort
        }
        if (n != null) {
            n.close();
        }
        if (m != null) {
            m.close();
        }
        Sh.quiet("ip", "netns", "del", ns);
        Sh.quiet("ip", "link", "del", tapName);
    }

    private static void closeQuietly(VhostUserClient c, VhostUserServer s) {
        try {
            if (c != null) {
                c.close();
            }
        } catch (RuntimeException ignored) {
            // best effort
        }
        try {
            if (s != null) {
                s.close();
            }
        } catch (RuntimeException ignored) {
            // best effort
        }
    }

    @Override
    public void close() {
        closeQuietly(client, server);
        cleanup(device, mem, nic);
    }
}
