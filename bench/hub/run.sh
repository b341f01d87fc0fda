#!/usr/bin/env bash
# Hub benchmarks (issue 14), self-contained; prints a markdown table with
# ratios against references run in the same invocation:
#   1. fan-out: 1 publisher -> 50 subscribers, 64 B messages: deliveries/s
#      and server CPU per delivery, ct-hub against redis-server
#      PUBLISH/SUBSCRIBE (bench/hub/fanout.c drives both the same way);
#   2. file transfer: ct-filer `get` of a 512 MiB file (tmpfs) against
#      `sha256sum` of the same file (the digest is the physical limit).
#
#   bash bench/hub/run.sh BUILD_DIR
#
# Servers pinned to core 1, the load generator to core 0 (taskset, when
# available).  Environment: BENCH_SECONDS (3), BENCH_REPS (3),
# BENCH_SUBS (50), BENCH_SIZE (64), BENCH_WINDOW (50 messages in flight
# per subscriber), BENCH_MIB (512).
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${BENCH_SECONDS:-3}
REPS=${BENCH_REPS:-3}
SUBS=${BENCH_SUBS:-50}
SIZE=${BENCH_SIZE:-64}
WINDOW=${BENCH_WINDOW:-50}
MIB=${BENCH_MIB:-512}
LOADGEN=$B/bench/hub/hub_fanout
HUB=$B/apps/hub/ct-hub
FILER=$B/apps/hub/ct-filer
for x in "$LOADGEN" "$HUB" "$FILER"; do
  if [ ! -x "$x" ]; then
    echo "hub bench: $x not built" >&2
    exit 1
  fi
done
if ! command -v redis-server >/dev/null; then
  echo "hub bench: redis-server not installed (scripts/deps.sh bench)" >&2
  exit 1
fi
# SRV_PIN, CLI_PIN, free_port, median
. "$SRC/bench/bench_lib.sh"

# start_server hub|redis -> PID, PORT; waits until it accepts connections
start_server() {
  PORT=$(free_port)
  if [ "$1" = hub ]; then
    $SRV_PIN "$HUB" --log-level warn --listen "tcp:$PORT:interface=127.0.0.1" \
      --broadcast-interval 3600 >/dev/null 2>&1 &
  else
    $SRV_PIN redis-server --port "$PORT" --bind 127.0.0.1 --save "" \
      --appendonly no --protected-mode no >/dev/null 2>&1 &
  fi
  PID=$!
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "hub bench: $1 did not start" >&2
  exit 1
}

stop_server() {
  kill "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
}

declare -A RES CPU last
RAT=""
for rep in $(seq 1 "$REPS"); do
  for srv in hub redis; do
    start_server "$srv"
    out=$($CLI_PIN "$LOADGEN" "$srv" "$PORT" "$SUBS" "$SECS" "$SIZE" "$WINDOW")
    r=$(echo "$out" | awk '/^deliveries/ {print $2}')
    all=$(echo "$out" | awk '/^deliveries/ {print $4}')
    # server CPU (user+system, warm-up included) per delivered message
    ticks=$(awk '{print $14 + $15}' "/proc/$PID/stat" 2>/dev/null)
    cpu=$(awk -v t="${ticks:-0}" -v a="${all:-0}" -v hz="$(getconf CLK_TCK)" \
          'BEGIN { if (a > 0) printf "%.3f", t * 1e6 / hz / a; else print 0 }')
    stop_server
    RES[$srv]="${RES[$srv]:-} ${r:-0}"
    CPU[$srv]="${CPU[$srv]:-} $cpu"
    last[$srv]=${r:-0}
  done
  RAT="$RAT $(awk -v c="${last[hub]}" -v r="${last[redis]}" 'BEGIN { if (r > 0) printf "%.3f", c / r; else print 0 }')"
done

XF=$(python3 "$SRC/bench/hub/xfer.py" "$HUB" "$FILER" "$MIB" "$REPS")
XR=""
for pair in $(echo "$XF" | awk '{print $2 "/" $4}'); do
  XR="$XR $(echo "$pair" | awk -F/ '{ if ($1 > 0) printf "%.3f", $2 / $1; else print 0 }')"
done

h=$(echo ${RES[hub]} | tr ' ' '\n' | median)
r=$(echo ${RES[redis]} | tr ' ' '\n' | median)
ch=$(echo ${CPU[hub]} | tr ' ' '\n' | median)
cr=$(echo ${CPU[redis]} | tr ' ' '\n' | median)
ratio=$(echo $RAT | tr ' ' '\n' | median)
xt=$(echo "$XF" | awk '{print $2}' | median)
st=$(echo "$XF" | awk '{print $4}' | median)
xratio=$(echo $XR | tr ' ' '\n' | median)

echo "## Hub fan-out and file transfer"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, ${SECS} s x ${REPS} runs, medians; servers on core 1, load generator on core 0."
echo
echo "| benchmark | ctwist | reference | ratio (median of pairs) | target |"
echo "|---|---|---|---|---|"
echo "| fan-out 1 -> $SUBS, $SIZE B: deliveries/s | ct-hub $h | redis-server $r | $ratio | >= 1.0 |"
echo "| server CPU per delivery (us) | $ch | $cr | - | - |"
echo "| transfer of $MIB MiB (s) | ct-filer get $xt | sha256sum $st | $xratio (throughput vs sha256sum) | >= 0.8 |"
echo
echo "Per-pair ratios: fan-out:$RAT; transfer:$XR"
