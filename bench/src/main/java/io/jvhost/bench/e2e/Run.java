package io.jvhost.bench.e2e;

import io.jvhost.driver.RingOptions;
import java.nio.file.Path;

/**
 * Everything one measured run needs: the scenario, its namespace and tap, where the C tools are,
 * a private directory (sockets, logs) and the CPU split. Back-ends run on {@code backendCpus};
 * front-ends, generators and requesters share {@code frontendCpus} (the machine has two cores).
 * {@code rings}: the virtqueue format and ordering the front-end asks for (--rings).
 */
record Run(Scenario scenario, NetNs ns, Procs procs, Path binDir, Path dir, String tag,
           String backendCpus, String frontendCpus, RingOptions rings) {

    Path bin(String name) {
        return binDir.resolve(name);
    }

    Path socket() {
        return dir.resolve("vhost.sock");
    }
}
