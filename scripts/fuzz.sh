#!/usr/bin/env bash
# Run every libFuzzer target for a bounded time (FUZZ_SECONDS, default 60),
# starting from the committed corpus; new inputs go to a scratch directory.
set -euo pipefail
builddir=${1:-build-fuzz}
secs=${2:-${FUZZ_SECONDS:-60}}
top=$(cd "$(dirname "$0")/.." && pwd)
status=0
for exe in "$builddir"/test/fuzz/fuzz_*; do
  [ -x "$exe" ] || continue
  name=$(basename "$exe"); target=${name#fuzz_}
  scratch=$(mktemp -d)
  echo "== $name for ${secs}s"
  if ! "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        "$scratch" "$top/test/fuzz/corpus/$target"; then
    status=1
  fi
  rm -rf "$scratch"
done
exit $status
