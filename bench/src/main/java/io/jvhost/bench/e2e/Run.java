package io.jvhost.bench.e2e;

import java.nio.file.Path;

/**
 * Everything one measured run needs: the scenario, its namespace and tap, where the C tools are,
 * a private directory (sockets, logs) and the CPU split. Back-ends run on {@code backendCpus};
 * front-ends, generators and requesters share {@code frontendCpus} (the machine has two cores).
 */
record Run(Scenario scenario, NetNs ns, Procs procs, Path binDir, Path dir, String tag,
           String backendCpus, String frontendCpus) {

    Path bin(String name) {
        return binDir.resolve(name);
    }

    Path socket() {
        return dir.resolve("vhost.sock");
    }
}
