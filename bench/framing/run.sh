#!/usr/bin/env bash
# Framing benchmark: the receivers' parse rate in memory, ctwist and
# Twisted (Debian python3-twisted) on the same streams, side by side; then
# the message protocol over TCP when its program is built.
# Usage: run.sh BUILD_DIR [seconds-per-case [chunk-bytes]]
set -euo pipefail
builddir=$(cd "${1:-build}" && pwd)
secs=${2:-0.5}
chunk=${3:-16384}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin="$builddir/bench/framing/framing_mem"
[ -x "$bin" ] || { echo "missing $bin (build target framing_mem)" >&2; exit 1; }
twisted=$(mktemp)
trap 'rm -f "$twisted"' EXIT
if /usr/bin/python3 -c 'import twisted' 2>/dev/null; then
  /usr/bin/python3 "$top/bench/ref/framing_twisted.py" "$secs" "$chunk" >"$twisted"
else
  echo "# twisted not installed: no reference numbers" >&2
fi
TWISTED_RESULTS="$twisted" "$bin" "$secs" "$chunk"
tcp="$builddir/bench/framing/framing_message_tcp"
if [ -x "$tcp" ]; then
  echo
  "$tcp"
fi
