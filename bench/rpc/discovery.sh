#!/usr/bin/env bash
# 2 servers behind ZooKeeper discovery against 1 (issue 11): calls/s of
# `ct-rpc --zk ... --service ... --bench` when the service has one member,
# when it has two, and, as the reference without ZooKeeper, `ct-rpc
# --connect` to one server -- in one invocation, against one standalone
# ZooKeeper started for the run (test/zk/zkserver.py) and stopped by PID.
#
#   bash bench/rpc/discovery.sh BUILD_DIR
#
# Each server is pinned to its own core (taskset), the client is not: on a
# 2-core machine the client shares a core with a server, so "2 / 1" says
# how much of the client's work a second server can absorb, not a
# two-machine speed-up.  Environment: BENCH_CALLS (default 100000),
# BENCH_CONC (calls in flight, default 64), BENCH_REPS (3).
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
TOP=$(cd "$(dirname "$0")/../.." && pwd)
CALLS=${BENCH_CALLS:-100000}
CONC=${BENCH_CONC:-64}
REPS=${BENCH_REPS:-3}
CTWISTD=$B/apps/ctwistd/ctwistd
CTRPC=$B/apps/rpc/ct-rpc
# median
. "$(dirname "$0")/../bench_lib.sh"

WORK=$(mktemp -d)
ZKPID=
cleanup() {
  [ -n "${S1:-}" ] && kill "$S1" 2>/dev/null
  [ -n "${S2:-}" ] && kill "$S2" 2>/dev/null
  /usr/bin/python3 "$TOP/test/zk/zkserver.py" stop "$WORK/zk" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
/usr/bin/python3 "$TOP/test/zk/zkserver.py" start "$WORK/zk" >/dev/null || exit 1
ZK=$(cat "$WORK/zk/ensemble")

# serve SERVICE CORE -> PID in $SPID, port in $SPORT
serve() {
  local out=$WORK/out.$RANDOM
  taskset -c "$2" "$CTWISTD" --log-level warn rpc --listen tcp:0:interface=127.0.0.1 \
    --zk "$ZK" --service "$1" >"$out" 2>/dev/null &
  SPID=$!
  for _ in $(seq 1 200); do
    grep -q "listening on" "$out" 2>/dev/null && break
    sleep 0.05
  done
  SPORT=$(sed -n 's/listening on 127.0.0.1:\([0-9]*\)/\1/p' "$out")
}

members() {
  "$CTRPC" --zk "$ZK" --service "$1" --members 2>/dev/null | wc -l
}

rate() { # ct-rpc args... -> calls/s
  "$CTRPC" --quiet "$@" --bench "$CALLS" --concurrency "$CONC" add 1 2 |
    awk '/calls\/s/ {print $(NF-1)}'
}

serve one 1; S1=$SPID; P1=$SPORT
serve two 1; S2=$SPID
serve two 0; S3=$SPID
for _ in $(seq 1 100); do
  [ "$(members one)" = 1 ] && [ "$(members two)" = 2 ] && break
done
declare -a R1 R2 RS RAT
for rep in $(seq 1 "$REPS"); do
  s=$(rate --connect "tcp:127.0.0.1:$P1")
  a=$(rate --zk "$ZK" --service one)
  b=$(rate --zk "$ZK" --service two)
  RS+=("$s"); R1+=("$a"); R2+=("$b")
  RAT+=("$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print 0 }')")
done
kill "$S3" 2>/dev/null
m() { printf '%s\n' "$@" | median; }
echo "## JSON-RPC behind ZooKeeper discovery"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $CALLS \`add\` calls x $REPS runs, $CONC in flight, medians; ct-rpc --bench."
echo
echo "| --connect 1 server | --zk, 1 member | --zk, 2 members | 2 members / 1 |"
echo "|---|---|---|---|"
echo "| $(m "${RS[@]}") | $(m "${R1[@]}") | $(m "${R2[@]}") | $(m "${RAT[@]}") |"
echo
echo "Per-run ratios 2/1: ${RAT[*]}"
