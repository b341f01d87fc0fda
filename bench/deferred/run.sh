#!/usr/bin/env bash
# Deferred benchmark: ctwist and Twisted (Debian python3-twisted) on the
# same three shapes, printed side by side.  Usage: run.sh BUILD_DIR
set -euo pipefail
builddir=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin="$builddir/bench/deferred/bench_deferred"
[ -x "$bin" ] || { echo "missing $bin (build target bench_deferred)" >&2; exit 1; }
twisted=$(mktemp)
trap 'rm -f "$twisted"' EXIT
if /usr/bin/python3 -c 'import twisted' 2>/dev/null; then
  /usr/bin/python3 "$top/bench/ref/deferred_twisted.py" >"$twisted"
else
  echo "# twisted not installed: no reference numbers" >&2
fi
TWISTED_RESULTS="$twisted" "$bin"
