#!/usr/bin/env bash
# Usage: bench/timers/run.sh BUILD_DIR [N]
# Runs ctwist's timer benchmark and the raw-libevent reference on the same
# workload and prints the ratios ctwist/libevent (lower is better).
set -euo pipefail
b=$(cd "${1:-build}" && pwd)
n=${2:-1000000}
here=$(cd "$(dirname "$0")" && pwd)
ct=$("$b/bench/timers/bench_timers" "$n")
le=$("$b/bench/ref/ref_timers_libevent" "$n")
echo "$ct"
echo "$le"
field() { # field IMPL SHAPE KEY
  printf '%s\n%s\n' "$ct" "$le" | awk -v i="$1" -v s="$2" -v k="$3" \
    '$1==i && $2==s { for (f=3; f<=NF; f++) { split($f, kv, "="); if (kv[1]==k) print kv[2] } }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "ratios ctwist/libevent (target <= 1.00 time, <= 0.75 memory):"
echo "  fire   wall $(ratio "$(field ctwist fire wall)" "$(field libevent fire wall)")  cpu $(ratio "$(field ctwist fire cpu)" "$(field libevent fire cpu)")"
echo "  cancel wall $(ratio "$(field ctwist cancel wall)" "$(field libevent cancel wall)")  cpu $(ratio "$(field ctwist cancel cpu)" "$(field libevent cancel cpu)")"
echo "  memory per pending timer $(ratio "$(field ctwist fire rss_per_timer)" "$(field libevent fire rss_per_timer)")  ($(field ctwist fire rss_per_timer) B vs $(field libevent fire rss_per_timer) B)"
if [ "${CT_BENCH_TWISTED:-0}" = 1 ] && /usr/bin/python3 -c 'import twisted' 2>/dev/null; then
  /usr/bin/python3 "$here/../ref/timers_twisted.py" 100000
fi
