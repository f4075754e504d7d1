#!/usr/bin/env bash
# redis-benchmark -t set,get at -P 1 and -P 16: a redis-server directly vs
# cacheproxy over it vs nutcracker over it, alternating, with each proxy's
# CPU time per request read from /proc. Loopback only; stops what it starts.
#   usage: scripts/redis-benchmark-compare.sh [ROUNDS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${2:-200000}
. scripts/bench-lib.sh
need redis-server redis-benchmark nutcracker
go build -o bin/cacheproxy ./cmd/cacheproxy
RP=$(free_port); CP=$(free_port); NP=$(free_port); SP=$(free_port)
redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --loglevel warning & pids+=($!)
wait_port $RP
cat > "$dir/nc.yml" <<YML
one:
  listen: 127.0.0.1:$NP
  redis: true
  hash: fnv1a_64
  distribution: ketama
  timeout: 2000
  servers:
    - 127.0.0.1:$RP:1 r1
YML
sed "s/listen: 127.0.0.1:$NP/listen: 127.0.0.1:$CP/" "$dir/nc.yml" > "$dir/cp.yml"
bin/cacheproxy -c "$dir/cp.yml" -v 3 & CPID=$!; pids+=($CPID)
nutcracker -c "$dir/nc.yml" -s $SP -a 127.0.0.1 -o "$dir/nc.log" & NPID=$!; pids+=($NPID)
wait_port $CP; wait_port $NP
cpu() { awk '{print $14+$15}' /proc/$1/stat; }   # clock ticks (1/100 s)
run() { # target port pid depth test
  local c0=0 c1=0 out rps
  [ "$3" != - ] && c0=$(cpu $3)
  out=$(redis-benchmark -h 127.0.0.1 -p $2 -t $5 -n $N -c 32 -P $4 -q 2>/dev/null | tr '\r' '\n' | grep -E "^$(echo $5 | tr a-z A-Z): [0-9]" | tail -1)
  [ "$3" != - ] && c1=$(cpu $3)
  rps=$(echo "$out" | awk '{print $2}')
  local us=-
  [ "$3" != - ] && us=$(awk -v a=$c0 -v b=$c1 -v n=$N 'BEGIN{printf "%.2f", (b-a)*10000/n}')
  echo "$1 P$4 $5 $rps $us"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf "%-10s %-4s %-4s %12s %12s\n" target P test "req/s" "cpu us/req"
for r in $(seq 1 $ROUNDS); do
  for P in 1 16; do
    for t in set get; do
      for tgt in "direct $RP -" "cacheproxy $CP $CPID" "nutcracker $NP $NPID"; do
        set -- $tgt
        run $1 $2 $3 $P $t
      done
    done
  done
done | awk '{printf "%-10s %-4s %-4s %12s %12s\n", $1, $2, $3, $4, $5}'
