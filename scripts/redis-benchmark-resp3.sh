#!/usr/bin/env bash
# redis-benchmark through cacheproxy over one redis-server, the same load as
# a RESP2 client (the default) and as a RESP3 client (-3: HELLO 3 first), alternating,
# with the proxy's CPU time per request read from /proc. Loopback only;
# stops what it starts.
#   usage: scripts/redis-benchmark-resp3.sh [ROUNDS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${2:-200000}
. scripts/bench-lib.sh
need redis-server redis-benchmark
go build -o bin/cacheproxy ./cmd/cacheproxy
RP=$(free_port); CP=$(free_port)
redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --loglevel warning & pids+=($!)
wait_port $RP
cat > "$dir/cp.yml" <<YML
one:
  listen: 127.0.0.1:$CP
  redis: true
  hash: fnv1a_64
  distribution: ketama
  timeout: 2000
  servers:
    - 127.0.0.1:$RP:1 r1
YML
bin/cacheproxy -c "$dir/cp.yml" -v 3 -s 0 & CPID=$!; pids+=($CPID)
wait_port $CP
cpu() { awk '{print $14+$15}' /proc/$1/stat; }   # clock ticks (1/100 s)
run() { # proto depth test
  local c0 c1 out rps us
  c0=$(cpu $CPID)
  local flag=""
  [ "$1" = 3 ] && flag=-3
  out=$(redis-benchmark $flag -h 127.0.0.1 -p $CP -t $3 -n $N -c 32 -P $2 -q 2>/dev/null | tr '\r' '\n' | grep -E "^$(echo $3 | tr a-z A-Z)[^:]*: [0-9]" | tail -1)
  c1=$(cpu $CPID)
  rps=$(echo "$out" | sed 's/.*: \([0-9.]*\) requests.*/\1/')
  us=$(awk -v a=$c0 -v b=$c1 -v n=$N 'BEGIN{printf "%.2f", (b-a)*10000/n}')
  echo "RESP$1 P$2 $3 $rps $us"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf "%-6s %-4s %-10s %12s %12s\n" proto P test "req/s" "cpu us/req"
for r in $(seq 1 $ROUNDS); do
  for P in 1 16; do
    for t in set get lrange_100; do
      for proto in 2 3; do
        run $proto $P $t
      done
    done
  done
done | awk '{printf "%-6s %-4s %-10s %12s %12s\n", $1, $2, $3, $4, $5}'
