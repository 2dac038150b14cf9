# Sourced by the tools/ scripts: finds a JDK >= 25 and exports JAVA_HOME for this process only.
jvhost_find_jdk() {
  local cand v
  for cand in "${JAVA_HOME:-}" /usr/lib/jvm/*; do
    [ -n "$cand" ] && [ -x "$cand/bin/java" ] && [ -x "$cand/bin/javac" ] || continue
    v=$("$cand/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    case "$v" in ''|1.*) continue ;; esac
    if [ "${v%%.*}" -ge 25 ] 2>/dev/null; then
      export JAVA_HOME="$cand"
      return 0
    fi
  done
  echo "jvhost: no JDK 25 or newer found (looked at JAVA_HOME and /usr/lib/jvm/*)." >&2
  echo "jvhost: install one, e.g. Temurin 25, under /usr/lib/jvm, or set JAVA_HOME to it." >&2
  return 1
}
