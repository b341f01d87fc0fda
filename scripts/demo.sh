#!/usr/bin/env bash
# `make demo`: timed tasks via callLater/LoopingCall, an echo round trip
# over loopback TCP between ct-echo-server and the ct-echo client, then a
# JSON-RPC round trip (ctwistd rpc + ct-rpc) with a cancelled sleep.
set -euo pipefail
builddir=${1:-build}
bin=$builddir/apps

echo "== 1. timed tasks (ct-demo)"
"$bin/demo/ct-demo"

echo
echo "== 2. echo round trip over TCP (ct-echo-server + ct-echo)"
# wait_line FILE PATTERN WHAT: wait (bounded) for a server's line.
wait_line() {
  for _ in $(seq 1 100); do
    grep -q "$2" "$1" && return 0
    sleep 0.05
  done
  echo "demo: $3 did not start" >&2
  exit 1
}
out=$(mktemp)
"$bin/echo/ct-echo-server" --listen tcp:0:interface=127.0.0.1 >"$out" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
wait_line "$out" '^ready' "the echo server"
addr=$(sed -n 's/^listening on //p' "$out")
port=${addr##*:}
echo "server listening on $addr (pid $server)"
"$bin/echo/ct-echo" --connect "tcp:host=127.0.0.1:port=$port" --message "hello, ctwist"
"$bin/echo/ct-echo" --connect "tcp:host=127.0.0.1:port=$port" --count 10000 --size 64
kill -TERM "$server"
wait "$server" || true

echo
echo "== 3. JSON-RPC round trip (ctwistd rpc + ct-rpc)"
rpcout=$(mktemp)
"$bin/ctwistd/ctwistd" --log-level warn rpc --listen tcp:0:interface=127.0.0.1 >"$rpcout" &
rpcd=$!
trap 'kill "$server" "$rpcd" 2>/dev/null || true; rm -f "$out" "$rpcout"' EXIT
wait_line "$rpcout" '^listening on' "ctwistd rpc"
raddr=$(sed -n 's/^listening on //p' "$rpcout" | head -1)
rpc="$bin/rpc/ct-rpc --connect tcp:127.0.0.1:${raddr##*:}"
echo "ctwistd rpc listening on $raddr (pid $rpcd)"
echo "\$ ct-rpc add 1 2";          $rpc add 1 2
echo "\$ ct-rpc echo '{\"hello\": [\"ctwist\"]}'"; $rpc echo '{"hello": ["ctwist"]}'
echo "\$ ct-rpc --cancel-after 0.2 sleep 10   (rpc.cancel crosses the wire)"
$rpc --cancel-after 0.2 sleep 10
echo "\$ ct-rpc --timeout 0.2 sleep 10   (the deadline crosses the wire)"
$rpc --timeout 0.2 sleep 10 || true
echo "\$ ct-rpc stats"; $rpc stats
$rpc --quiet --bench 20000 --concurrency 16 --connections 4 add 1 2
kill -TERM "$rpcd"
wait "$rpcd" || true
echo
echo "demo: done"
