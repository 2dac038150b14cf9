package io.jvhost.nativ.gen;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.GroupLayout;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.PaddingLayout;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Checks the committed jextract output against the C compiler: {@code src/test/c/layout.c} is built
 * with gcc over the same {@code ffi-headers/jvhost.h} jextract read, run, and each line it prints
 * (struct sizes, alignments, member offsets and sizes, constant values) is compared with the generated
 * layouts ({@code byteSize()}, {@code byteAlignment()}, {@code byteOffset(PathElement...)}) and the
 * constant accessors of {@link Linux}. Every mismatch is reported by name.
 *
 * <p>It also checks coverage: every constant, struct and union in {@code ffi-headers/symbols.txt}, every
 * typedef of a struct or union ({@code cpu_set_t}), and every member of every generated struct must be
 * probed by layout.c, so a symbol added to the filter without a C-side check fails here.
 *
 * <p>Needs gcc (CI installs it); without it the test fails, it does not skip.
 */
@Timeout(120)
class LayoutConformanceTest {

    private static final String GEN_PACKAGE = "io.jvhost.nativ.gen";
    private static final Pattern SYMBOL_LINE =
            Pattern.compile("^--include-(constant|struct|union|function|typedef|var)\\s+(\\S+)");

    /** "kind key" (e.g. "offsetof epoll_event.data") to the C value, in output order. */
    private static Map<String, Long> cValues;
    /** kind ("constant", "struct", ...) to the names symbols.txt includes. */
    private static Map<String, Set<String>> symbols;

    @BeforeAll
    static void compileAndRunProbe() throws IOException, InterruptedException {
        Path root = repositoryRoot();
        Path headers = root.resolve("ffi-headers");
        Path source = root.resolve("native-bindings/src/test/c/layout.c");
        Path outDir = moduleDir().resolve("target/layout-conformance");
        Files.createDirectories(outDir);
        Path exe = outDir.resolve("layout");

        String gcc = findOnPath("gcc").orElseGet(() -> fail(
                "gcc not found on PATH: the layout-conformance test compiles " + source
                        + " to check the jextract output against the C compiler. Install it: apt-get install gcc"));

        run(List.of(gcc, "-std=gnu11", "-O0", "-Wall", "-Wextra", "-Werror",
                        "-I", headers.toString(), "-o", exe.toString(), source.toString()),
                "gcc " + source.getFileName());
        String out = run(List.of(exe.toString()), exe.toString());

        Map<String, Long> values = new LinkedHashMap<>();
        for (String line : out.split("\n")) {
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.trim().split(" ");
            if (f.length != 3) {
                fail("layout.c printed a malformed line: '" + line + "'");
            }
            if (values.put(f[0] + " " + f[1], Long.parseLong(f[2])) != null) {
                fail("layout.c printed '" + f[0] + " " + f[1] + "' twice");
            }
        }
        cValues = values;

        Map<String, Set<String>> syms = new LinkedHashMap<>();
        for (String line : Files.readAllLines(headers.resolve("symbols.txt"), StandardCharsets.UTF_8)) {
            Matcher m = SYMBOL_LINE.matcher(line.trim());
            if (m.find()) {
                syms.computeIfAbsent(m.group(1), k -> new LinkedHashSet<>()).add(m.group(2));
            }
        }
        symbols = syms;
    }

    @Test
    void structLayoutsMatchTheCCompiler() {
        List<String> mismatches = new ArrayList<>();
        int checked = 0;
        for (Map.Entry<String, Long> e : cValues.entrySet()) {
            String kind = e.getKey().substring(0, e.getKey().indexOf(' '));
            String item = e.getKey().substring(kind.length() + 1);
            if (kind.equals("const")) {
                continue;
            }
            long c = e.getValue();
            long java;
            try {
                int dot = item.indexOf('.');
                GroupLayout layout = layoutOf(dot < 0 ? item : item.substring(0, dot));
                switch (kind) {
                    case "sizeof" -> java = layout.byteSize();
                    case "alignof" -> java = layout.byteAlignment();
                    case "offsetof" -> java = layout.byteOffset(path(layout, item.substring(dot + 1)));
                    case "fieldsize" -> java = layout.select(path(layout, item.substring(dot + 1))).byteSize();
                    default -> {
                        mismatches.add(e.getKey() + ": unknown line kind printed by layout.c");
                        continue;
                    }
                }
            } catch (ReflectiveOperationException | RuntimeException | LinkageError ex) {
                mismatches.add(e.getKey() + ": no Java counterpart (" + ex + ")");
                continue;
            }
            checked++;
            if (java != c) {
                mismatches.add(e.getKey() + ": C " + c + ", Java " + java);
            }
        }
        assertNoMismatch("struct layouts", mismatches);
        assertTrue(checked > 100, "only " + checked + " layout items checked");
    }

    @Test
    void constantsMatchTheCCompiler() {
        List<String> mismatches = new ArrayList<>();
        for (Map.Entry<String, Long> e : cValues.entrySet()) {
            if (!e.getKey().startsWith("const ")) {
                continue;
            }
            String name = e.getKey().substring("const ".length());
            long c = e.getValue();
            Object value;
            try {
                Method m = Linux.class.getMethod(name);
                if (!Modifier.isStatic(m.getModifiers())) {
                    mismatches.add(name + ": Linux." + name + "() is not static");
                    continue;
                }
                value = m.invoke(null);
            } catch (ReflectiveOperationException | RuntimeException | LinkageError ex) {
                mismatches.add(name + ": no usable Linux." + name + "() (" + ex + ")");
                continue;
            }
            String problem = compareConstant(c, value);
            if (problem != null) {
                mismatches.add(name + ": " + problem);
            }
        }
        assertNoMismatch("constants", mismatches);
    }

    @Test
    void layoutProbeCoversEverySymbolAndMember() {
        List<String> missing = new ArrayList<>();
        Set<String> probedConstants = new LinkedHashSet<>();
        for (String key : cValues.keySet()) {
            if (key.startsWith("const ")) {
                probedConstants.add(key.substring("const ".length()));
            }
        }
        Set<String> constants = symbols.getOrDefault("constant", Set.of());
        for (String name : constants) {
            if (!probedConstants.contains(name)) {
                missing.add("constant " + name + " is in symbols.txt but layout.c does not print it");
            }
        }
        for (String name : probedConstants) {
            if (!constants.contains(name)) {
                missing.add("constant " + name + " is printed by layout.c but not in symbols.txt");
            }
        }
        for (String kind : List.of("struct", "union", "typedef")) {
            for (String tag : symbols.getOrDefault(kind, Set.of())) {
                if (kind.equals("typedef") && !hasGeneratedClass(tag)) {
                    continue; // a scalar typedef (size_t, __u16 ...): a layout constant in Linux, no class
                }
                if (!cValues.containsKey("sizeof " + tag)) {
                    missing.add(kind + " " + tag + ": layout.c prints no sizeof");
                    continue;
                }
                try {
                    for (String member : memberNames(layoutOf(tag), "")) {
                        if (!cValues.containsKey("offsetof " + tag + "." + member)) {
                            missing.add(kind + " " + tag + ": layout.c prints no offsetof for member " + member);
                        }
                    }
                } catch (ReflectiveOperationException | RuntimeException | LinkageError ex) {
                    missing.add(kind + " " + tag + ": no usable generated class (" + ex + ")");
                }
            }
        }
        assertNoMismatch("coverage of layout.c", missing);
    }

    /** Null when equal, else a description naming both values. */
    static String compareConstant(long c, Object value) {
        return switch (value) {
            case Long l -> l == c ? null : "C " + c + ", Java long " + l;
            // jextract types a constant int when its value fits 32 bits, whatever its C signedness
            // (EPOLLET is 1u << 31): the bits must agree, and the C value must fit 32 bits.
            case Integer i -> c >= Integer.MIN_VALUE && c <= 0xFFFF_FFFFL && (int) c == i
                    ? null : "C " + c + ", Java int " + i;
            case Short s -> s == c ? null : "C " + c + ", Java short " + s;
            case Byte b -> b == c ? null : "C " + c + ", Java byte " + b;
            case Character ch -> ch == c ? null : "C " + c + ", Java char " + (int) ch;
            case MemorySegment seg -> seg.address() == c ? null : "C " + c + ", Java address " + seg.address();
            default -> "unexpected Java type " + value.getClass().getName();
        };
    }

    private static void assertNoMismatch(String what, List<String> problems) {
        if (!problems.isEmpty()) {
            fail(problems.size() + " mismatch(es) in " + what + " between ffi-headers/jvhost.h (gcc) and "
                    + GEN_PACKAGE + " (jextract):\n  " + String.join("\n  ", problems)
                    + "\nRegenerate with tools/regen-bindings.sh, or fix native-bindings/src/test/c/layout.c.");
        }
    }

    /** Whether jextract emitted a class for a typedef: it does for a typedef of a struct or union. */
    private static boolean hasGeneratedClass(String name) {
        try {
            Class.forName(GEN_PACKAGE + "." + name, false, LayoutConformanceTest.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    private static GroupLayout layoutOf(String tag) throws ReflectiveOperationException {
        Class<?> cls = Class.forName(GEN_PACKAGE + "." + tag);
        return (GroupLayout) cls.getMethod("layout").invoke(null);
    }

    /**
     * The path elements for a dotted member path. jextract keeps C's anonymous structs and unions as
     * members named "$anon$line:col"; C reaches their members as if they were the parent's, so a name
     * not found directly is looked up through them.
     */
    static PathElement[] path(GroupLayout layout, String dotted) {
        List<PathElement> elems = new ArrayList<>();
        GroupLayout current = layout;
        String[] names = dotted.split("\\.");
        for (int i = 0; i < names.length; i++) {
            List<String> hops = find(current, names[i]);
            if (hops == null) {
                throw new IllegalArgumentException("no member '" + names[i] + "' in " + current.name().orElse("?"));
            }
            MemoryLayout member = current;
            for (String hop : hops) {
                elems.add(PathElement.groupElement(hop));
                member = ((GroupLayout) member).select(PathElement.groupElement(hop));
            }
            if (i < names.length - 1) {
                if (!(member instanceof GroupLayout g)) {
                    throw new IllegalArgumentException("member '" + names[i] + "' is not a struct or union");
                }
                current = g;
            }
        }
        return elems.toArray(PathElement[]::new);
    }

    /** Names from group to the member called name, through anonymous members; null if absent. */
    private static List<String> find(GroupLayout group, String name) {
        for (MemoryLayout m : group.memberLayouts()) {
            if (m.name().filter(name::equals).isPresent()) {
                return List.of(name);
            }
        }
        for (MemoryLayout m : group.memberLayouts()) {
            if (m instanceof GroupLayout g && isAnonymous(m)) {
                List<String> rest = find(g, name);
                if (rest != null) {
                    List<String> hops = new ArrayList<>();
                    hops.add(m.name().orElseThrow());
                    hops.addAll(rest);
                    return hops;
                }
            }
        }
        return null;
    }

    /** The member paths C can name directly: named members, and the members of anonymous ones. */
    private static List<String> memberNames(GroupLayout group, String prefix) {
        List<String> names = new ArrayList<>();
        for (MemoryLayout m : group.memberLayouts()) {
            if (m instanceof PaddingLayout || m.name().isEmpty()) {
                continue;
            }
            if (isAnonymous(m) && m instanceof GroupLayout g) {
                names.addAll(memberNames(g, prefix));
            } else {
                names.add(prefix + m.name().orElseThrow());
            }
        }
        return names;
    }

    private static boolean isAnonymous(MemoryLayout m) {
        return m.name().filter(n -> n.startsWith("$anon$")).isPresent();
    }

    private static String run(List<String> command, String what) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        byte[] out;
        try {
            out = p.getInputStream().readAllBytes();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                fail(what + " did not finish in 60 s");
            }
        } finally {
            p.destroyForcibly();
        }
        String text = new String(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            fail(what + " failed with exit code " + p.exitValue() + ":\n" + text);
        }
        return text;
    }

    private static Optional<String> findOnPath(String exe) {
        String path = System.getenv().getOrDefault("PATH", "/usr/bin:/bin");
        for (String dir : path.split(":")) {
            if (!dir.isEmpty()) {
                Path cand = Path.of(dir, exe);
                if (Files.isExecutable(cand)) {
                    return Optional.of(cand.toString());
                }
            }
        }
        return Optional.empty();
    }

    /** The module directory: surefire's basedir, else the working directory (surefire runs there). */
    private static Path moduleDir() {
        return Path.of(System.getProperty("basedir", System.getProperty("user.dir"))).toAbsolutePath();
    }

    private static Path repositoryRoot() {
        for (Path p = moduleDir(); p != null; p = p.getParent()) {
            if (Files.isRegularFile(p.resolve("ffi-headers/jvhost.h"))) {
                return p;
            }
        }
        throw new UncheckedIOException(new IOException(
                "ffi-headers/jvhost.h not found above " + moduleDir()));
    }
}
