#!/usr/bin/env bash
# Run every benchmark: each bench/<name>/run.sh gets the build directory.
set -euo pipefail
builddir=$(cd "${1:-build}" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
for run in "$top"/bench/*/run.sh; do
  [ -f "$run" ] || continue
  echo "=== $(basename "$(dirname "$run")")"
  bash "$run" "$builddir"
done
