package io.jvhost.bench.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The generated RESULTS.md section: medians, ratios, pending rows, and splicing between the markers. */
class ReportTest {
    @TempDir
    Path dir;

    private static Sample tput(Scenario s, String c, int r, double pps) {
        return new Sample(s, c, r, pps, pps * 64 * 8 / 1e9, 1.0, 50, Double.NaN, Double.NaN, 0, null, null);
    }

    private static Sample rr(String c, int r, long base) {
        Histogram h = new Histogram(3);
        for (int i = 1; i <= 1000; i++) {
            h.recordValue(base + i);
        }
        return new Sample(Scenario.RR_64, c, r, 1000, 0.001, 2.0, 10, Double.NaN, Double.NaN, 1, h, null);
    }

    @Test
    void writesTablesRatiosAndKeepsTheRestOfTheFile() throws Exception {
        Contender dpdk = new VhostContender(new Dpdk.Backend(), new Dpdk.FrontEnd());
        Contender jv = new VhostContender(new Jvhost.Backend(List.of("jvhost"), 0, "pending integration: test"),
                new Dpdk.FrontEnd());
        Report r = new Report(dir, List.of(Scenario.TX_64, Scenario.TX_64K_GSO, Scenario.RR_64),
                List.of(new CLimitContender(), dpdk, jv), 3, 5, 2, "0", "1", "bench/run-e2e --quick", "abc");
        double[] c = {800_000, 900_000, 1_000_000};
        double[] d = {400_000, 450_000, 100_000};
        for (int i = 0; i < 3; i++) {
            r.add(tput(Scenario.TX_64, "c-limit", i + 1, c[i]));
            r.add(tput(Scenario.TX_64, "dpdk", i + 1, d[i]));
            r.add(rr("c-limit", i + 1, 10_000));
            r.add(rr("dpdk", i + 1, 20_000));
        }
        r.add(Sample.failed(Scenario.TX_64K_GSO, "c-limit", 1, "boom"));
        r.unsupported(Scenario.TX_64K_GSO, "dpdk", "n/a: no GSO");
        r.unsupported(Scenario.TX_64, "jvhost", "pending integration: test");
        r.finish();
        Path md = dir.resolve("RESULTS.md");
        Files.writeString(md, "# head\n\nkept above\n\n" + Report.BEGIN + "\nold\n" + Report.END + "\nkept below\n");
        r.writeResultsMd(md, dir.resolve("pub").toString());
        r.writeResultsMd(md, dir.resolve("pub").toString()); // idempotent: still one section
        String s = Files.readString(md);
        assertTrue(s.startsWith("# head\n\nkept above\n\n" + Report.BEGIN), s);
        assertTrue(s.endsWith(Report.END + "\nkept below\n"), s);
        assertEquals(s.indexOf(Report.BEGIN), s.lastIndexOf(Report.BEGIN));
        assertTrue(s.contains("| c-limit | 0.900 | 0.800–1.000 |"), s);
        assertTrue(s.contains("| dpdk (front-end: testpmd virtio-user) | 0.400 | 0.100–0.450 |"), s);
        assertTrue(s.contains("dpdk/C = 0.44"), s);
        assertTrue(s.contains("jvhost/DPDK = pending"), s);
        assertTrue(s.contains("| jvhost | pending integration: test |"), s);
        assertTrue(s.contains("| dpdk | n/a: no GSO |"), s);
        assertTrue(s.contains("| c-limit | failed: boom |"), s);
        assertTrue(s.contains("rr64-dpdk.hgrm"), s);
        assertTrue(Files.exists(dir.resolve("pub").resolve("rr64-c-limit.hgrm")));
        assertTrue(Files.exists(dir.resolve("pub").resolve("samples.csv")));
    }

    @Test
    void autoFrontEndIsTheJavaDriverForRxAndGsoTxAndTestpmdElse() {
        VhostContender.AutoFrontEnd auto = new VhostContender.AutoFrontEnd(new Dpdk.FrontEnd(), new Jvhost.DriverFrontEnd());
        assertEquals("Java driver", auto.pick(Scenario.RX_64).name());
        assertEquals("Java driver", auto.pick(Scenario.RX_1514).name());
        assertEquals("Java driver", auto.pick(Scenario.TX_64K_GSO).name());
        assertEquals("testpmd virtio-user", auto.pick(Scenario.TX_64).name());
        assertEquals("testpmd virtio-user", auto.pick(Scenario.RR_64).name());
    }

    @Test
    void rxTableShowsWhatWasReadFromTheTapAndTheNotesNameEachFrontEnd() throws Exception {
        VhostContender.AutoFrontEnd auto = new VhostContender.AutoFrontEnd(new Dpdk.FrontEnd(), new Jvhost.DriverFrontEnd());
        Contender dpdk = new VhostContender(new Dpdk.Backend(), auto);
        Report r = new Report(dir, List.of(Scenario.RX_64, Scenario.TX_64), List.of(new CLimitContender(), dpdk), 1, 5, 2,
                "0", "1", "bench/run-e2e --quick", "abc");
        r.add(new Sample(Scenario.RX_64, "c-limit", 1, 900_000, 0.5, 1.0, 99, 950_000, 900_000, 0, null, null));
        r.add(new Sample(Scenario.RX_64, "dpdk", 1, 200_000, 0.3, 1.0, 99, 600_000, 500_000, 0, null, null));
        r.finish();
        Path md = dir.resolve("RESULTS.md");
        r.writeResultsMd(md, null);
        String s = Files.readString(md);
        assertTrue(s.contains("| dpdk (front-end: Java driver) | 0.200 |"), s);
        assertTrue(s.contains(" 0.500 | 0.600 | 1 |"), s);
        assertTrue(s.contains(" 0.900 | 0.950 | 1 |"), s);
        assertTrue(s.contains("- Front-end per scenario in this run: RX 64 B: Java driver; TX 64 B: testpmd virtio-user."), s);
        assertTrue(!s.contains("RX stays on testpmd"), s);
    }

    @Test
    void parsesLimitProgramResultLines() throws Exception {
        Path log = dir.resolve("x.log");
        Files.writeString(log, "# cmd\nnoise\nRESULT frames=10 seconds=2.000 pps=5 gbps=0.001\n");
        String line = Procs.resultLine(log);
        assertEquals(5, Procs.resultValue(line, "pps"));
        assertEquals(10, Procs.resultValue(line, "frames"));
        assertTrue(Double.isNaN(Procs.resultValue(line, "lost")));
    }

    @Test
    void cpuSecondsOfThisProcessIsANumber() {
        double s = Procs.cpuSeconds(ProcessHandle.current().pid());
        assertTrue(s >= 0, "cpu " + s);
        assertTrue(Double.isNaN(Procs.cpuSeconds(Long.MAX_VALUE)));
    }
}
