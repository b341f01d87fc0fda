#!/usr/bin/env bash
# JSON-RPC benchmark (issue 10): `add` calls against ctwistd rpc (1 worker
# and --workers 2), a Twisted JSON-RPC server over Int32StringReceiver
# (bench/ref/rpc_twisted.py) and redis-server's PING_INLINE, at 1 x 1,
# 50 x 1 and 50 x 16 (connections x calls in flight), in one invocation.
#
#   bash bench/rpc/run.sh BUILD_DIR
#
# One load generator (bench/rpc/rpc_load, plain epoll) drives every server
# with the same pipelining, so the columns compare servers, not clients;
# redis-benchmark's own PING_INLINE figure is reported next to it.  Each
# shape runs BENCH_REPS times (default 3) interleaved over the servers; the
# table shows medians, the ratios are medians of back-to-back pairs, and
# server CPU time per call (from /proc, steadier than calls/s when other
# jobs share the cores).  Servers are pinned to core 1, the load generator
# to core 0 (the 2-worker server uses both cores).
#
# Environment: BENCH_SECONDS (default 2), BENCH_REPS (3), BENCH_SHAPES
# ("1x1 50x1 50x16"), BENCH_SERVERS ("ctwist ctwist2 twisted redis").
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
TOP=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${BENCH_SECONDS:-2}
REPS=${BENCH_REPS:-3}
LOAD=$B/bench/rpc/rpc_load
CTWISTD=$B/apps/ctwistd/ctwistd
TWISTED=$TOP/bench/ref/rpc_twisted.py
for x in "$LOAD" "$CTWISTD"; do
  [ -x "$x" ] || { echo "rpc bench: $x not built" >&2; exit 1; }
done
for x in redis-server redis-benchmark; do
  command -v $x >/dev/null || { echo "rpc bench: $x missing (scripts/deps.sh)" >&2; exit 1; }
done
# SRV_PIN, CLI_PIN, free_port, median
. "$(dirname "$0")/../bench_lib.sh"

wait_port() {
  for _ in $(seq 1 200); do
    /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "rpc bench: nothing listening on $1" >&2
  return 1
}

# start_server NAME -> PID, PORT
start_server() {
  PORT=$(free_port)
  case $1 in
    ctwist) $SRV_PIN "$CTWISTD" --log-level warn rpc --listen "tcp:$PORT:interface=127.0.0.1" >/dev/null 2>&1 & ;;
    ctwist2) "$CTWISTD" --log-level warn --workers 2 rpc --listen "tcp:$PORT:interface=127.0.0.1" >/dev/null 2>&1 & ;;
    twisted) $SRV_PIN /usr/bin/python3 "$TWISTED" "$PORT" >/dev/null 2>&1 & ;;
    redis) $SRV_PIN redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
  esac
  PID=$!
  wait_port "$PORT"
}

# CPU ticks of the server and its children (the workers).
cpu_ticks() {
  local t=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}

stop_server() {
  kill "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
}


declare -A RPS P50 P99 CPU RAT last
SERVERS=${BENCH_SERVERS:-"ctwist ctwist2 twisted redis"}
SHAPES=${BENCH_SHAPES:-"1x1 50x1 50x16"}
for shape in $SHAPES; do
  conns=${shape%x*}; depth=${shape#*x}
  for rep in $(seq 1 "$REPS"); do
    for srv in $SERVERS; do
      start_server "$srv" || continue
      mode=$srv; [ "$srv" = ctwist2 ] && mode=ctwist
      t0=$(cpu_ticks "$PID")
      out=$($CLI_PIN "$LOAD" "$mode" "$PORT" "$conns" "$depth" "$SECS" 0.3)
      t1=$(cpu_ticks "$PID")
      if [ "$srv" = redis ]; then
        # redis-benchmark's own figure for the same shape, same server.
        n=$((conns * depth * 2000)); [ $n -gt 200000 ] && n=200000
        rb=$($CLI_PIN redis-benchmark -p "$PORT" -t ping_inline -c "$conns" -P "$depth" -n "$n" -q 2>/dev/null |
             tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -1)
        RPS[$shape,rb]="${RPS[$shape,rb]:-} ${rb:-0}"
      fi
      stop_server
      r=$(echo "$out" | awk '{print $2}')
      all=$(echo "$out" | awk '{print $12}')
      RPS[$shape,$srv]="${RPS[$shape,$srv]:-} ${r:-0}"
      P50[$shape,$srv]="${P50[$shape,$srv]:-} $(echo "$out" | awk '{print $4}')"
      P99[$shape,$srv]="${P99[$shape,$srv]:-} $(echo "$out" | awk '{print $6}')"
      CPU[$shape,$srv]="${CPU[$shape,$srv]:-} $(awk -v t=$((t1 - t0)) -v a="${all:-0}" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { if (a > 0) printf "%.2f", t * 1e6 / hz / a; else print 0 }')"
      last[$srv]=${r:-0}
    done
    for ref in redis twisted ctwist; do
      for srv in ctwist ctwist2; do
        RAT[$shape,$srv,$ref]="${RAT[$shape,$srv,$ref]:-} $(awk -v c="${last[$srv]:-0}" -v r="${last[$ref]:-0}" 'BEGIN { if (r > 0) printf "%.2f", c / r; else print 0 }')"
      done
    done
  done
done

m() { echo $1 | tr ' ' '\n' | median; }
echo "## JSON-RPC"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ${SECS} s x ${REPS} runs, medians; \`add\` calls (PING_INLINE for redis) from bench/rpc/rpc_load."
echo
echo "| shape | ctwistd rpc calls/s (p50 / p99 us) | --workers 2 | Twisted Int32StringReceiver | redis PING_INLINE (redis-benchmark) | ctwist / redis | ctwist / Twisted | workers 2 / 1 | server CPU us/call ctwist / Twisted / redis |"
echo "|---|---|---|---|---|---|---|---|---|"
for shape in $SHAPES; do
  cell() { echo "$(m "${RPS[$shape,$1]:-}") ($(m "${P50[$shape,$1]:-}") / $(m "${P99[$shape,$1]:-}"))"; }
  echo "| $shape | $(cell ctwist) | $(cell ctwist2) | $(cell twisted) | $(cell redis) ($(m "${RPS[$shape,rb]:-}")) | $(m "${RAT[$shape,ctwist,redis]:-}") | $(m "${RAT[$shape,ctwist,twisted]:-}") | $(m "${RAT[$shape,ctwist2,ctwist]:-}") | $(m "${CPU[$shape,ctwist]:-}") / $(m "${CPU[$shape,twisted]:-}") / $(m "${CPU[$shape,redis]:-}") |"
done
echo
for shape in $SHAPES; do
  echo "Per-pair ratios $shape: ctwist/redis:${RAT[$shape,ctwist,redis]:-}; ctwist/Twisted:${RAT[$shape,ctwist,twisted]:-}"
done
