package io.jvhost.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The deployment files in the repository, checked by the tools their users run:
 * the systemd template units ({@code tools/systemd/}) with {@code systemd-analyze verify}, the
 * libvirt domain examples ({@code docs/libvirt/}) with {@code virt-xml-validate} against libvirt's
 * own schema. tools/install-deps installs both (systemd, libvirt-clients, libxml2-utils).
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DeploymentFilesTest {
    static final Path ROOT = Path.of("..").toAbsolutePath().normalize();
    static final Path UNITS = ROOT.resolve("tools/systemd");
    static final Path LIBVIRT = ROOT.resolve("docs/libvirt");

    record Run(int rc, String out) {
    }

    static Run run(List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), cmd + " did not finish");
        return new Run(p.exitValue(), out);
    }

    /**
     * {@code systemd-analyze verify} on the templates (it verifies a template as an instance). The
     * service's ExecStart names the install location {@code /usr/local/bin/jvhost} (README), which
     * need not exist here: the copy verified points at this checkout's launcher instead, every other
     * byte unchanged. verify exits 0 even for lines it ignores, so any output is a failure.
     */
    @Test
    void systemdUnitsVerify() throws Exception {
        Path analyze = Path.of("/usr/bin/systemd-analyze");
        assumeTrue(Files.isExecutable(analyze), "systemd-analyze missing (Debian package systemd; tools/install-deps)");
        String service = Files.readString(UNITS.resolve("jvhost@.service"));
        String socket = Files.readString(UNITS.resolve("jvhost@.socket"));
        assertTrue(service.contains("\nType=notify\n") && service.contains("ExecStart=/usr/local/bin/jvhost "), service);
        assertTrue(socket.contains("\nListenStream=/run/jvhost/%i.sock\n"), socket);
        String exec = service.lines().filter(l -> l.startsWith("ExecStart=")).findFirst().orElseThrow();
        assertTrue(!exec.contains("--socket-path") && !exec.contains("--fd"), "socket activation, not a path: " + exec);

        Path dir = Files.createTempDirectory("jvhost-units-");
        try {
            Files.writeString(dir.resolve("jvhost@.service"),
                    service.replace("/usr/local/bin/jvhost", ROOT.resolve("tools/jvhost").toString()));
            Files.writeString(dir.resolve("jvhost@.socket"), socket);
            Run r = run(List.of(analyze.toString(), "verify", dir.resolve("jvhost@.socket").toString(),
                    dir.resolve("jvhost@.service").toString()));
            assertEquals(0, r.rc(), r.out());
            assertEquals("", r.out().strip(), "systemd-analyze verify complained");

            // The check has teeth: a misspelt setting is reported.
            Files.writeString(dir.resolve("jvhost@.service"), Files.readString(dir.resolve("jvhost@.service"))
                    .replace("Type=notify", "Type=notifyy"));
            Run bad = run(List.of(analyze.toString(), "verify", dir.resolve("jvhost@.service").toString()));
            assertTrue(bad.out().contains("notifyy"), bad.out());
        } finally {
            try (var s = Files.list(dir)) {
                for (Path p : s.toList()) {
                    Files.delete(p);
                }
            }
            Files.delete(dir);
        }
    }

    /** Both libvirt examples (jvhost as server and as client) validate against libvirt's domain schema. */
    @Test
    void libvirtDomainsValidate() throws Exception {
        Path validate = Path.of("/usr/bin/virt-xml-validate");
        assumeTrue(Files.isExecutable(validate), "virt-xml-validate missing (Debian package libvirt-clients; tools/install-deps)");
        List<String> modes = new ArrayList<>();
        for (String name : List.of("jvhost-server.xml", "jvhost-client.xml")) {
            Path f = LIBVIRT.resolve(name);
            String xml = Files.readString(f);
            assertTrue(xml.contains("<interface type='vhostuser'>"), name);
            assertTrue(xml.contains("<source type='memfd'/>") && xml.contains("<access mode='shared'/>"), name);
            assertTrue(xml.matches("(?s).*<driver queues='[2-9]'.*"), name + ": multi-queue");
            modes.add(xml.replaceAll("(?s).*<source type='unix' path='[^']+' mode='(\\w+)'.*", "$1"));
            Run r = run(List.of(validate.toString(), f.toString(), "domain"));
            assertEquals(0, r.rc(), name + ":\n" + r.out());
            assertTrue(r.out().contains("validates"), r.out());

            Path broken = Files.createTempFile("jvhost-domain-", ".xml");
            try {
                Files.writeString(broken, xml.replace("<access mode='shared'/>", "<access mode='sharred'/>"));
                Run b = run(List.of(validate.toString(), broken.toString(), "domain"));
                assertNotEquals(0, b.rc(), "a broken copy of " + name + " must fail:\n" + b.out());
            } finally {
                Files.deleteIfExists(broken);
            }
        }
        // QEMU as client (jvhost serves) and QEMU as server (jvhost --client).
        assertEquals(List.of("client", "server"), modes);
    }
}
