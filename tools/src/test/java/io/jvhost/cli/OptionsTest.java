package io.jvhost.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.config.Configuration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.parallel.ResourceLock;

class OptionsTest {

    @Test
    void parsesBothValueForms() {
        Options o = Options.parse(new String[] {"--socket-path=/run/a.sock", "--queues", "4", "--client"});
        assertEquals("/run/a.sock", o.string(Options.SOCKET_PATH, null));
        assertEquals(4, o.queues());
        assertTrue(o.flag(Options.CLIENT));
        assertEquals(Options.MTU_DEFAULT, o.mtu());
    }

    @Test
    void devicesRepeatInOrder() {
        Options o = Options.parse(new String[] {"--socket-path=/a", "--tap=t0", "--mac=52:54:00:00:00:01",
            "--socket-path=/b", "--tap=t1"});
        assertEquals(List.of("/a", "/b"), o.strings(Options.SOCKET_PATH));
        assertEquals(List.of("t0", "t1"), o.strings(Options.TAP));
        assertArrayEquals(new byte[] {0x52, 0x54, 0, 0, 0, 1}, o.mac(0));
        assertNull(o.mac(1));
    }

    @Test
    void refusesWhatItCannotHonour() {
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--bogus"}));
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--queues=1", "--queues=2"}));
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--queues=0"}).queues());
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--queues=x"}).queues());
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--mtu=20"}).mtu());
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--mac=52:54:00"}).mac(0));
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--tap"}));
    }

    @Test
    @ResourceLock("system-properties")
    void queueAffinityNamesDevicesQueuesAndWorkers() {
        String workers = System.getProperty(Configuration.WORKERS.property());
        String cpus = System.getProperty(Configuration.CPUS.property());
        try {
            checkQueueAffinity();
        } finally {
            restore(Configuration.WORKERS.property(), workers);
            restore(Configuration.CPUS.property(), cpus);
        }
    }

    private static void checkQueueAffinity() {
        Options o = Options.parse(new String[] {"--socket-path=/a", "--queue-affinity=vm0:0=1,vm0:1=0"});
        assertEquals(java.util.Map.of("vm0:0", 1, "vm0:1", 0), o.queueAffinity());
        assertEquals(java.util.Map.of(), Options.parse(new String[] {"--socket-path=/a"}).queueAffinity());
        assertThrows(IllegalArgumentException.class,
                () -> Options.parse(new String[] {"--queue-affinity=vm0=1"}).queueAffinity());
        // names a device that does not exist, a worker beyond --workers, a CPU the process may not use
        assertEquals(2, Main.run(new String[] {"--socket-path=/tmp/jvhost-opt-nonexistent.sock", "--queue-affinity=vm7:0=0"}));
        assertEquals(2, Main.run(new String[] {"--socket-path=/tmp/jvhost-opt-nonexistent.sock", "--workers=1",
            "--queue-affinity=vm0:0=1"}));
        assertEquals(2, Main.run(new String[] {"--socket-path=/tmp/jvhost-opt-nonexistent.sock", "--cpus=8191"}));
        assertEquals(2, Main.run(new String[] {"--socket-path=/tmp/jvhost-opt-nonexistent.sock", "--cpus=3-1"}));
    }

    @Test
    void exitCodes() {
        assertEquals(0, Main.run(new String[] {"--help"}));
        assertEquals(0, Main.run(new String[] {"--print-capabilities"}));
        assertEquals(2, Main.run(new String[] {"--nope"}));
        assertEquals(2, Main.run(new String[] {"--fd=3", "--socket-path=/x"}));
        assertEquals(2, Main.run(new String[] {"frobnicate", "--socket-path=/x"}));
    }

    /** Every tunable is a flag: listed by --help with its default and property, validated, applied as its property. */
    @Test
    @ResourceLock("system-properties")
    void everyTunableIsAFlag() {
        String help = Options.usage();
        for (Configuration.Tunable<?> t : Configuration.ALL) {
            assertTrue(help.contains("--" + t.flag() + "=") && help.contains(t.property()), t.flag() + " in --help");
        }
        String weight = System.getProperty(Configuration.WEIGHT.property());
        String spin = System.getProperty(Configuration.ADAPTIVE_SPIN_NANOS.property());
        String batch = System.getProperty(Configuration.RX_URING_BATCH.property());
        try {
            Options.parse(new String[] {"--weight=32", "--adaptive-spin-us", "7", "--rx-uring-batch"}).applyTunables();
            assertEquals(32, Configuration.WEIGHT.get());
            assertEquals(7_000L, Configuration.ADAPTIVE_SPIN_NANOS.get(), "µs on the command line, ns in the property");
            assertEquals(true, Configuration.RX_URING_BATCH.get(), "a switch alone means true");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Options.parse(new String[] {"--weight=0"}).applyTunables());
            assertTrue(e.getMessage().contains("--weight=0") && e.getMessage().contains("out of range"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> Options.parse(new String[] {"--tap-io=aio"}).applyTunables());
            assertTrue(e.getMessage().contains("uring or syscalls"), e.getMessage());
            assertEquals(2, Main.run(new String[] {"--busy-poll-us=-1", "--socket-path=/x"}));
        } finally {
            restore(Configuration.WEIGHT.property(), weight);
            restore(Configuration.ADAPTIVE_SPIN_NANOS.property(), spin);
            restore(Configuration.RX_URING_BATCH.property(), batch);
        }
    }

    private static void restore(String property, String value) {
        if (value == null) {
            System.clearProperty(property);
        } else {
            System.setProperty(property, value);
        }
    }

    @Test
    void operationsOptions() {
        Options o = Options.parse(new String[] {"stats", "--stats-path=/run/x.stats", "--watch", "--interval=0.5", "--count=3"});
        assertTrue(o.flag(Options.WATCH));
        assertEquals(500, o.intervalMillis());
        assertEquals(3, o.integer(Options.COUNT, 0, 0, Integer.MAX_VALUE));
        assertEquals(1000, Options.parse(new String[0]).intervalMillis());
        assertThrows(IllegalArgumentException.class, () -> Options.parse(new String[] {"--interval=0.01"}).intervalMillis());
        Options s = Options.parse(new String[] {"--metrics=127.0.0.1:9477", "--jfr=/tmp/x.jfr", "--log-level=debug"});
        assertEquals("127.0.0.1:9477", s.string(Options.METRICS, null));
        assertEquals("/tmp/x.jfr", s.string(Options.JFR, null));
        assertEquals("debug", s.string(Options.LOG_LEVEL, null));
        assertTrue(Options.usage().contains("--metrics=HOST:PORT") && Options.usage().contains("--watch"));
    }
}
