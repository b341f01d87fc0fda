#!/usr/bin/env bash
# `make demo`: timed tasks via callLater/LoopingCall, then an echo round trip
# over loopback TCP between ct-echo-server and the ct-echo client.
set -euo pipefail
builddir=${1:-build}
bin=$builddir/apps

echo "== 1. timed tasks (ct-demo)"
"$bin/demo/ct-demo"

echo
echo "== 2. echo round trip over TCP (ct-echo-server + ct-echo)"
out=$(mktemp)
"$bin/echo/ct-echo-server" --listen tcp:0:interface=127.0.0.1 >"$out" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
# Wait (bounded) for the server to report its address.
for _ in $(seq 1 100); do
  grep -q '^ready' "$out" && break
  sleep 0.05
done
if ! grep -q '^ready' "$out"; then
  echo "demo: the echo server did not start" >&2
  exit 1
fi
addr=$(sed -n 's/^listening on //p' "$out")
port=${addr##*:}
echo "server listening on $addr (pid $server)"
"$bin/echo/ct-echo" --connect "tcp:host=127.0.0.1:port=$port" --message "hello, ctwist"
"$bin/echo/ct-echo" --connect "tcp:host=127.0.0.1:port=$port" --count 10000 --size 64
kill -TERM "$server"
wait "$server" || true
echo
echo "demo: done"
