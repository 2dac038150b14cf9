package io.jvhost;

import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.lang.ArchRule;
import com.tngtech.archunit.lang.EvaluationResult;
import io.jvhost.virtq.ArchBackEdgeFixture;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The package layering of the datapath as executable rules (docs/ARCHITECTURE.md, "Layers"), from
 * the bottom: the spec constants ({@code virtio}) and {@code config}; guest {@code memory}; ring
 * formats ({@code virtq}); {@code stats}; virtio-net and the tap ({@code net}); the workers
 * ({@code engine}); the vhost-user protocol ({@code vhostuser}); the device that joins them
 * ({@code device}). Each layer may use only the layers below it. The Java front-end
 * ({@code driver}) is a column of its own that the device side never uses; {@code demo} sits on
 * top. And no two packages depend on each other in a cycle.
 */
class ArchitectureTest {
    private static JavaClasses production;

    @BeforeAll
    static void importClasses() {
        production = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("io.jvhost");
    }

    static ArchRule layers() {
        return layeredArchitecture().consideringOnlyDependenciesInLayers()
                .layer("config").definedBy("io.jvhost.config..")
                .layer("virtio").definedBy("io.jvhost.virtio..")
                .layer("jfr").definedBy("io.jvhost.jfr..")
                .layer("memory").definedBy("io.jvhost.memory..")
                .layer("virtq").definedBy("io.jvhost.virtq..")
                .layer("stats").definedBy("io.jvhost.stats..")
                .layer("net").definedBy("io.jvhost.net..")
                .layer("engine").definedBy("io.jvhost.engine..")
                .layer("vhostuser").definedBy("io.jvhost.vhostuser..")
                .layer("device").definedBy("io.jvhost.device..")
                .layer("driver").definedBy("io.jvhost.driver..")
                .layer("demo").definedBy("io.jvhost.demo..")
                .whereLayer("demo").mayNotBeAccessedByAnyLayer()
                .whereLayer("driver").mayOnlyBeAccessedByLayers("demo")
                .whereLayer("device").mayOnlyBeAccessedByLayers("demo")
                .whereLayer("vhostuser").mayOnlyBeAccessedByLayers("device", "driver", "demo")
                .whereLayer("engine").mayOnlyBeAccessedByLayers("device", "demo")
                .whereLayer("net").mayOnlyBeAccessedByLayers("engine", "vhostuser", "device", "driver", "demo")
                .whereLayer("stats").mayOnlyBeAccessedByLayers("net", "engine", "device", "demo")
                .whereLayer("virtq").mayOnlyBeAccessedByLayers("net", "engine", "vhostuser", "device", "driver", "demo")
                .whereLayer("memory").mayOnlyBeAccessedByLayers("virtq", "net", "engine", "vhostuser", "device", "driver",
                        "demo")
                .whereLayer("virtio").mayOnlyBeAccessedByLayers("jfr", "virtq", "net", "engine", "vhostuser", "device",
                        "driver", "demo")
                // JFR events: emitted from every layer that sees something happen (one line per call site)
                .whereLayer("jfr").mayOnlyBeAccessedByLayers("virtq", "stats", "net", "engine", "vhostuser", "device",
                        "driver", "demo")
                .whereLayer("config").mayOnlyBeAccessedByLayers("net", "engine", "device", "demo");
    }

    static ArchRule noCycles() {
        return slices().matching("io.jvhost.(*)..").should().beFreeOfCycles();
    }

    @Test
    void packagesAreLayered() {
        layers().check(production);
    }

    @Test
    void packagesHaveNoCycles() {
        noCycles().check(production);
    }

    /**
     * The rules do fail: {@link ArchBackEdgeFixture} (test code in {@code virtq}) uses the engine,
     * a back-edge from a lower layer to a higher one, which also closes a cycle.
     */
    @Test
    void aBackEdgeBreaksBothRules() {
        JavaClasses withBackEdge = new ClassFileImporter().importClasses(ArchBackEdgeFixture.class,
                io.jvhost.engine.Worker.class, io.jvhost.engine.QueuePair.class, io.jvhost.virtq.Vring.class);
        assertFalse(layers().evaluate(production).hasViolation(), "production code alone is clean");
        EvaluationResult layered = layers().evaluate(withBackEdge);
        assertTrue(layered.hasViolation(), "virtq -> engine must break the layering");
        assertTrue(layered.getFailureReport().toString().contains("ArchBackEdgeFixture"),
                layered.getFailureReport().toString());
        assertTrue(noCycles().evaluate(withBackEdge).hasViolation(), "virtq -> engine -> virtq must be a cycle");
    }
}
