#!/usr/bin/env bash
# Regenerates native-bindings/src/generated/java (package io.jvhost.nativ.gen, header class Linux)
# from ffi-headers/jvhost.h filtered by ffi-headers/symbols.txt, and rewrites
# native-bindings/src/generated/GENERATED.md with the jextract / libclang / header versions used.
#
# The output is committed and never edited by hand (docs: STYLE.md, "generated code stays
# generated"). Run this after changing ffi-headers/, then run the layout-conformance tests:
#   mvn -o -q -B -pl native-bindings verify      (LayoutConformanceTest: generated vs gcc;
#                                                  IoUringLayoutTest: IoUring vs generated)
#   mvn -o -q -B -pl datapath -am test -Dtest='HandWrittenLayoutsTest,FeatureBitsTest' \
#       -Dsurefire.failIfNoSpecifiedTests=false  (datapath's descriptor classes vs generated)
#
# jextract: $JEXTRACT if set, else `jextract` on PATH. It is a build-time tool only; it is not
# part of this repository. Use one built against libclang 14 (the committed output was produced
# with it; output from newer libclang versions may differ). If the jextract installation has a
# file SOURCE next to its bin/ directory holding the git commit of the jextract sources it was
# built from, or JEXTRACT_COMMIT is set, that commit is recorded in GENERATED.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

jextract=${JEXTRACT:-$(command -v jextract || true)}
if [ -z "$jextract" ] || [ ! -x "$jextract" ]; then
  cat >&2 <<'EOF'
regen-bindings: no jextract found (set JEXTRACT=/path/to/bin/jextract or put jextract on PATH).
regen-bindings: get one by building the openjdk/jextract sources (the jextract project of OpenJDK)
regen-bindings: against libclang 14 (Debian/Ubuntu package libclang-14-dev) and JDK 25, following
regen-bindings: the build instructions in that project's README; or use a prebuilt jextract from
regen-bindings: the OpenJDK jextract early-access builds. Then re-run this script.
regen-bindings: With Debian's libclang-14 leave clang's builtin headers out of the jextract image
regen-bindings: (its conf/jextract): that libclang finds its own, and a second copy ahead of them
regen-bindings: hides glibc's <stdint.h> ("unknown type name 'uint64_t'").
EOF
  exit 1
fi

header=ffi-headers/jvhost.h
symbols=ffi-headers/symbols.txt
gen=native-bindings/src/generated
out=$gen/java
pkg=io.jvhost.nativ.gen
cls=Linux

# The exact invocation, with repository-relative paths so GENERATED.md is machine independent.
args=(-t "$pkg" --header-class-name "$cls" --output "$out" "@$symbols" "$header")

version=$("$jextract" --version 2>&1) || {
  echo "regen-bindings: '$jextract --version' failed:" >&2
  echo "$version" >&2
  exit 1
}
jx_version=$(printf '%s\n' "$version" | sed -n 's/^jextract //p' | head -1)
jdk_version=$(printf '%s\n' "$version" | sed -n 's/^JDK version //p' | head -1)
clang_version=$(printf '%s\n' "$version" | sed -n 's/^LibClang version //p' | head -1)

commit=${JEXTRACT_COMMIT:-}
jx_home=$(cd "$(dirname "$(readlink -f "$jextract")")/.." && pwd)
if [ -z "$commit" ] && [ -r "$jx_home/SOURCE" ]; then
  commit=$(head -1 "$jx_home/SOURCE")
fi
commit=${commit:-unknown}

case "$clang_version" in
  *" 14."*) ;;
  *) echo "regen-bindings: warning: libclang is '$clang_version', not 14; check the output compiles and the conformance test passes." >&2 ;;
esac

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }

rm -rf "$out"
mkdir -p "$out"
"$jextract" "${args[@]}"

cat > "$gen/GENERATED.md" <<EOF
# Generated code: do not edit

\`java/io/jvhost/nativ/gen/\` is jextract output, committed unedited. Change \`ffi-headers/\` and run
\`tools/regen-bindings.sh\` instead; then run the layout-conformance tests: \`LayoutConformanceTest\`
(every generated struct member and constant against gcc) and \`IoUringLayoutTest\` in native-bindings
(\`mvn -o -q -B -pl native-bindings verify\`), \`HandWrittenLayoutsTest\` and \`FeatureBitsTest\` in
datapath (the hand-written descriptor classes and feature bits against the generated layouts).

| what | value |
|---|---|
| jextract | $jx_version, built from openjdk/jextract commit \`$commit\` |
| JDK running jextract | $jdk_version |
| libclang | $clang_version |
| glibc headers (libc6-dev) | $(pkgver libc6-dev) |
| Linux uapi headers (linux-libc-dev) | $(pkgver linux-libc-dev) |
| architecture | $(uname -m) |

Command (from the repository root):

\`\`\`
jextract ${args[*]}
\`\`\`

The generated code calls restricted methods: run with \`--enable-native-access=ALL-UNNAMED\`
(or the module name) so the JVM does not warn.
EOF

echo "regen-bindings: wrote $out ($(find "$out" -name '*.java' | wc -l) files) and $gen/GENERATED.md" >&2
