#!/usr/bin/env bash
# Thread-pool round trips and child spawns, each against its bare
# reference in the same invocation.  Usage: run.sh BUILD_DIR [JOBS] [CHILDREN]
set -euo pipefail
builddir=$(cd "${1:-build}" && pwd)
bin="$builddir/bench/reach/bench_reach"
[ -x "$bin" ] || { echo "missing $bin (build target bench_reach)" >&2; exit 1; }
"$bin" "${2:-20000}" "${3:-300}"
