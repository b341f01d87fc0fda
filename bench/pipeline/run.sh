#!/usr/bin/env bash
# Pipelined request/response benchmark (issue 8).
#
#   bash bench/pipeline/run.sh BUILD_DIR
#
# The server under test is bench/pipeline/plugin_ping.c run by ctwistd: a
# line receiver that answers each "PING" line with its own "+PONG" write,
# written the way docs/tutorial.md teaches.  References in the same run:
# redis-server (PING_INLINE) and a Twisted LineReceiver doing the same.
# The load is redis-benchmark -t ping_inline -c 50 at pipeline depths 1 and
# 16 (Debian's redis-tools).  Servers run on core 1, the client on core 0;
# every (depth, server) pair is run PIPE_REPS times, interleaved, and the
# table shows medians of requests/s and the ratios against redis.
#
# Then syscalls per request: strace -c on the ctwist server over a fixed
# request count at depth 16 (about 2 per 16 requests: one read, one send).
#
# Environment: PIPE_REQUESTS (default 1000000 at depth 16, a tenth of it at
# depth 1), PIPE_REPS (default 3), PIPE_SERVERS (default "ctwist redis
# twisted").
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
REQS=${PIPE_REQUESTS:-1000000}
REPS=${PIPE_REPS:-3}
PY=/usr/bin/python3
CTWISTD=$B/apps/ctwistd/ctwistd
PLUGIN=$B/bench/pipeline/ping.so

for tool in redis-benchmark redis-server; do
  if ! command -v $tool >/dev/null; then
    echo "pipeline bench: $tool missing (scripts/deps.sh bench installs it)" >&2
    exit 1
  fi
done
if [ ! -x "$CTWISTD" ] || [ ! -f "$PLUGIN" ]; then
  echo "pipeline bench: $CTWISTD or $PLUGIN not built" >&2
  exit 1
fi

tmp=$(mktemp -d /tmp/ct-pipe-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

. "$(dirname "$0")/../bench_lib.sh" # free_port, median, SRV_PIN, CLI_PIN

wait_port() { # PORT: wait up to 10 s for a listener
  for _ in $(seq 100); do
    if $PY -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$1)))" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "pipeline bench: nothing listens on $1" >&2
  return 1
}

declare -A PORT PID
start_server() { # NAME
  local name=$1 port
  port=$(free_port)
  case $name in
  ctwist)
    $SRV_PIN "$CTWISTD" --plugin "$PLUGIN" --listen "tcp:$port:interface=127.0.0.1" \
      >"$tmp/$name.log" 2>&1 &
    ;;
  redis)
    $SRV_PIN redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize no --logfile "$tmp/$name.log" --dir "$tmp" &
    ;;
  twisted)
    $SRV_PIN $PY "$TOP/bench/ref/ping_twisted.py" "$port" >"$tmp/$name.log" 2>&1 &
    ;;
  esac
  PID[$name]=$!
  pids+=($!)
  PORT[$name]=$port
  wait_port "$port"
}

SERVERS=${PIPE_SERVERS:-ctwist redis twisted}
for s in $SERVERS; do
  if [ "$s" = twisted ] && ! $PY -c 'import twisted' 2>/dev/null; then
    echo "pipeline bench: skipping twisted (python3-twisted missing)" >&2
    SERVERS=${SERVERS/twisted/}
    continue
  fi
  start_server "$s"
done

rps() { # NAME DEPTH N
  $CLI_PIN redis-benchmark -p "${PORT[$1]}" -t ping_inline -c 50 -P "$2" -n "$3" --csv 2>/dev/null |
    awk -F, '/PING_INLINE/ {gsub(/"/, "", $2); print $2}'
}

declare -A RES
for depth in 1 16; do
  n=$REQS
  [ "$depth" = 1 ] && n=$((REQS / 10))
  for rep in $(seq "$REPS"); do
    for s in $SERVERS; do
      v=$(rps "$s" "$depth" "$n")
      RES[$s,$depth]="${RES[$s,$depth]:-} ${v:-0}"
    done
  done
done

med() { tr ' ' '\n' | grep -v '^$' | median; } # of a space-separated list

echo
echo "Pipelined PING, redis-benchmark -t ping_inline -c 50 (median of $REPS, requests/s)"
printf '%-8s %14s %14s %10s %10s\n' server "P=1" "P=16" "P=1/redis" "P=16/redis"
r1=$(echo "${RES[redis,1]:-0}" | med)
r16=$(echo "${RES[redis,16]:-0}" | med)
for s in $SERVERS; do
  m1=$(echo "${RES[$s,1]}" | med)
  m16=$(echo "${RES[$s,16]}" | med)
  printf '%-8s %14.0f %14.0f %10.2f %10.2f\n' "$s" "$m1" "$m16" \
    "$(awk -v a="$m1" -v b="$r1" 'BEGIN {print (b > 0 ? a / b : 0)}')" \
    "$(awk -v a="$m16" -v b="$r16" 'BEGIN {print (b > 0 ? a / b : 0)}')"
done
if [ -n "${RES[twisted,1]:-}" ]; then
  t1=$(echo "${RES[twisted,1]}" | med)
  t16=$(echo "${RES[twisted,16]}" | med)
  c1=$(echo "${RES[ctwist,1]}" | med)
  c16=$(echo "${RES[ctwist,16]}" | med)
  printf 'ctwist/twisted: P=1 %.2f  P=16 %.2f\n' \
    "$(awk -v a="$c1" -v b="$t1" 'BEGIN {print (b > 0 ? a / b : 0)}')" \
    "$(awk -v a="$c16" -v b="$t16" 'BEGIN {print (b > 0 ? a / b : 0)}')"
fi

# --- syscalls per request -----------------------------------------------------
if command -v strace >/dev/null && [ -n "${PID[ctwist]:-}" ]; then
  n=$((REQS / 10))
  strace -c -f -o "$tmp/strace.txt" -p "${PID[ctwist]}" &
  spid=$!
  sleep 0.5
  $CLI_PIN redis-benchmark -p "${PORT[ctwist]}" -t ping_inline -c 50 -P 16 -n "$n" --csv >/dev/null 2>&1
  kill -INT $spid 2>/dev/null
  wait $spid 2>/dev/null
  echo
  echo "ctwist syscalls at depth 16 over $n requests (strace -c):"
  awk -v n="$n" '$NF ~ /^(read|sendto|sendmsg|writev|write|epoll_wait|epoll_ctl)$/ {
      printf "  %-11s %9d  %.3f per request, %.2f per 16\n", $NF, $4, $4 / n, 16 * $4 / n; tot += $4 }
    END { printf "  %-11s %9d  %.3f per request, %.2f per 16\n", "total", tot, tot / n, 16 * tot / n }' \
    "$tmp/strace.txt"
fi
