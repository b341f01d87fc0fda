#!/usr/bin/env bash
# HTTP benchmark (issue 13): wrk, 50 keep-alive connections, one thread,
# against a 1 KiB static file and a "hello" handler, on ctwist (ctwistd web
# and bench/http/http_hello_server), nginx (nginx-light: one worker,
# sendfile on, access log off), Twisted (static.File + a Resource) and
# Python's http.server (HTTP/1.1), all in the same invocation.  Then
# ctwistd web with --workers 2 against one worker.
#
#   bash bench/http/run.sh BUILD_DIR
#
# Servers are pinned to core 1 and wrk to core 0 (taskset); the 2-worker
# run gives the server both cores and leaves wrk unpinned.  Each run is
# preceded by a 1 s warm-up.  Environment: BENCH_SECONDS (default 3),
# BENCH_CONNS (50), BENCH_SERVERS (default "ctwist nginx twisted python"),
# BENCH_ROUNDS (1: every run repeated, interleaved; the table shows
# medians).  Prints the load average before and after.
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
# shellcheck source=bench/http/nginx_conf.sh
. "$HERE/nginx_conf.sh"
SECS=${BENCH_SECONDS:-3}
CONNS=${BENCH_CONNS:-50}
SERVERS=${BENCH_SERVERS:-ctwist nginx twisted python}
PY=/usr/bin/python3
CTWISTD=$B/apps/ctwistd/ctwistd
HELLO=$B/bench/http/http_hello_server

for need in wrk taskset; do
  command -v $need >/dev/null || { echo "http bench: $need is missing (scripts/deps.sh bench)" >&2; exit 1; }
done
[ -x "$CTWISTD" ] && [ -x "$HELLO" ] || { echo "http bench: build first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ct-bench-http-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/www" "$WORK/nginx/tmp"
head -c 1024 /dev/urandom > "$WORK/www/file1k.bin"
# nginx's worker runs as an unprivileged user: the tree must be readable.
chmod 755 "$WORK" "$WORK/www"
chmod 644 "$WORK/www/file1k.bin"

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start CPUS PORT COMMAND...: run in the background (SERVER_PID), wait
# (bounded) until the port answers HTTP.
start() {
  local cpus=$1 port=$2; shift 2
  taskset -c "$cpus" "$@" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/file1k.bin"; then
      return 0
    fi
    sleep 0.1
  done
  echo "http bench: server did not start: $*" >&2
  cat "$WORK/server.log" >&2
  return 1
}

stop() {
  kill "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

nginx_conf() {
  nginx_conf_write "$WORK/nginx" "$WORK/www" "$1"
}

# server_cmd NAME SHAPE PORT: the command line.
server_cmd() {
  local name=$1 shape=$2 port=$3
  case $name in
    ctwist)
      if [ "$shape" = hello ]; then echo "$HELLO $port"
      else echo "$CTWISTD web --listen tcp:$port:interface=127.0.0.1 --path $WORK/www --access-log none"; fi ;;
    ctwist-1w)
      echo "$CTWISTD web --listen tcp:$port:interface=127.0.0.1 --path $WORK/www --access-log none" ;;
    ctwist-2w)
      echo "$CTWISTD --workers 2 web --listen tcp:$port:interface=127.0.0.1 --path $WORK/www --access-log none" ;;
    nginx) nginx_conf "$port"; echo "/usr/sbin/nginx -p $WORK/nginx -c $WORK/nginx/nginx.conf" ;;
    twisted) echo "$PY $TOP/bench/ref/http_twisted.py $port $WORK/www" ;;
    python) echo "$PY $TOP/bench/ref/http_python.py $port $WORK/www" ;;
  esac
}

# nonvoluntary context switches of a server and its children (nginx's
# worker, ctwistd's workers).
preempted() {
  local sum=0 p
  for p in "$1" $(pgrep -P "$1"); do
    sum=$(( sum + $(awk '/^nonvoluntary_ctxt_switches/ {print $2}' /proc/$p/status 2>/dev/null || echo 0) ))
  done
  echo $sum
}

RAW=$WORK/raw.txt
: > "$RAW"
run_one() {
  local name=$1 shape=$2 cpus=${3:-1} wrkcpus=${4:-0}
  local port; port=$(free_port)
  local path=/file1k.bin; [ "$shape" = hello ] && path=/hello
  local cmd; cmd=$(server_cmd "$name" "$shape" "$port")
  # The hello server answers 404 for /file1k.bin: readiness only needs HTTP.
  start "$cpus" "$port" $cmd || return 1
  local pid=$SERVER_PID
  taskset -c "$wrkcpus" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port$path" >/dev/null 2>&1
  local out cs0 cs1
  # Involuntary context switches of the server during the run: each is a
  # time slice lost to another process (the tail on a shared machine).
  cs0=$(preempted "$pid")
  out=$(taskset -c "$wrkcpus" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$port$path" 2>&1)
  cs1=$(preempted "$pid")
  stop "$pid"
  local rps p50 p90 p99 errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p90=$(echo "$out" | awk '$1=="90%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | grep -E "Non-2xx|Socket errors" | tr '\n' ' ')
  echo "$name $shape ${rps:-0} ${p99:--}" >> "$RAW"
  printf "%-10s %-7s %12s req/s   p50 %-9s p90 %-9s p99 %-9s preempted %5s/s %s\n" "$name" "$shape" \
    "${rps:-0}" "${p50:--}" "${p90:--}" "${p99:--}" "$(( (${cs1:-0} - ${cs0:-0}) / SECS ))" "$errs"
}

ROUNDS=${BENCH_ROUNDS:-1}
echo "wrk -t1 -c$CONNS -d${SECS}s --latency, keep-alive; servers on cpu 1, wrk on cpu 0; $ROUNDS round(s), interleaved"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$ROUNDS"); do
  for shape in static hello; do
    for s in $SERVERS; do
      run_one "$s" "$shape"
    done
  done
  # --workers 2 against 1 (server on both cores, wrk unpinned).
  run_one ctwist-2w static 0,1 0,1
  run_one ctwist-1w static 0,1 0,1
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Medians over the rounds; ratios of ctwist to each reference, and p99s.
echo
$PY - "$RAW" <<'PYEOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, shape, rps, p99 = line.split()
    ms = None
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if p99.endswith(unit):
            ms = float(p99[: -len(unit)]) * f
            break
    runs.setdefault((name, shape), []).append((float(rps), ms))
def med(name, shape, i):
    v = [r[i] for r in runs.get((name, shape), []) if r[i] is not None]
    return statistics.median(v) if v else None
def fmt(x, spec):
    return "-" if x is None else format(x, spec)
def ratio(a, b):
    return "-" if not a or not b else "%.2f" % (a / b)
refs = ("nginx", "twisted", "python")
print("| shape | ctwist req/s | nginx | Twisted | python | ctwist/nginx | ctwist/Twisted | ctwist/python "
      "| p99 ctwist | p99 nginx | p99 Twisted | p99 python |")
print("|---" * 12 + "|")
for shape in ("static", "hello"):
    c = med("ctwist", shape, 0)
    row = [shape, fmt(c, ",.0f")] + [fmt(med(r, shape, 0), ",.0f") for r in refs]
    row += [ratio(c, med(r, shape, 0)) for r in refs]
    row += [fmt(med(n, shape, 1), ".2f") + " ms" for n in ("ctwist",) + refs]
    print("| " + " | ".join(row) + " |")
w2, w1 = med("ctwist-2w", "static", 0), med("ctwist-1w", "static", 0)
print("\n--workers 2 vs 1 (static, both cores, wrk unpinned): %s vs %s req/s = %s; p99 %s vs %s ms"
      % (fmt(w2, ",.0f"), fmt(w1, ",.0f"), ratio(w2, w1),
         fmt(med("ctwist-2w", "static", 1), ".2f"), fmt(med("ctwist-1w", "static", 1), ".2f")))
PYEOF
