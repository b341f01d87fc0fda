#!/usr/bin/env bash
# `make soak`: a bounded soak of the echo server.  Rounds of ping-pong
# (200 connections), bulk (4 connections) and 2,000 idle connections run
# against one ct-echo-server until SOAK_SECONDS (default 120) have passed;
# every echoed byte is verified by the load generator.  The soak fails if a
# round fails, if the server's descriptor count does not return to its
# baseline after each round, or if its resident memory after the last round
# exceeds the first round's by more than 8 MiB (growth = a leak).
set -euo pipefail
builddir=${1:-build}
secs=${2:-${SOAK_SECONDS:-120}}
server_bin=$builddir/apps/echo/ct-echo-server
loadgen=$builddir/bench/echo/echo_loadgen
for b in "$server_bin" "$loadgen"; do
  [ -x "$b" ] || { echo "soak: $b is missing (run make build)" >&2; exit 1; }
done
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

out=$(mktemp)
"$server_bin" --listen tcp:0:interface=127.0.0.1 >"$out" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 100); do grep -q '^ready' "$out" && break; sleep 0.05; done
grep -q '^ready' "$out" || { echo "soak: server did not start" >&2; exit 1; }
port=$(sed -n 's/^listening on .*://p' "$out")

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
fds() { ls "/proc/$server/fd" | wc -l; }
settle_fds() { # wait (bounded) for closed connections to be reaped
  for _ in $(seq 1 100); do [ "$(fds)" -le "$base_fds" ] && return 0; sleep 0.05; done
  return 1
}

base_fds=$(fds)
end=$((SECONDS + secs))
round=0
first_rss=
while [ $SECONDS -lt $end ]; do
  round=$((round + 1))
  "$loadgen" -p "$port" -c 200 -s 64 -d 4 -t 4 -w 0 >/dev/null
  "$loadgen" -p "$port" -c 4 -s 16384 -b -t 3 -w 0 >/dev/null
  "$loadgen" -p "$port" -c 2000 -i -t 1 >/dev/null
  if ! settle_fds; then
    echo "soak: round $round: server holds $(fds) descriptors, baseline $base_fds" >&2
    exit 1
  fi
  rss=$(rss_kib)
  [ -n "$first_rss" ] || first_rss=$rss
  echo "soak: round $round ok: rss ${rss} KiB, fds $(fds)"
done
if [ $((rss - first_rss)) -gt 8192 ]; then
  echo "soak: resident memory grew from ${first_rss} KiB to ${rss} KiB" >&2
  exit 1
fi
kill -TERM "$server"
wait "$server"
echo "soak: $round rounds in ${secs}s: 1 passed, 0 failed"
