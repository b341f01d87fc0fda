# Shell helpers shared by the bench/<name>/run.sh scripts (source it).
# SRV_PIN / CLI_PIN: servers on core 1, load generators on core 0, when
# taskset is available.
if command -v taskset >/dev/null 2>&1; then
  SRV_PIN="taskset -c 1"; CLI_PIN="taskset -c 0"
else
  SRV_PIN=""; CLI_PIN=""
fi

# A free TCP port on 127.0.0.1.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The median of the numbers on stdin, one per line (0 when none).
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }
