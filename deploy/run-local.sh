#!/usr/bin/env bash
# Start the local backends a cacheproxy configuration names, then the proxy in
# front of them, in the foreground. Ctrl-C (or the proxy exiting) stops
# everything this script started.
#
#   deploy/run-local.sh [CONFIG]     (default config.yaml; `make run` builds
#                                     bin/cacheproxy and calls this)
#
# The servers come from `bin/cacheproxy -t -c CONFIG`: a memcached for every
# server of a memcache pool, a redis-server (persistence off, in a temporary
# directory) for every server of a redis pool, and a redis-server replicating
# from its primary for every replica. Backends must be on 127.0.0.1 TCP ports.
# The script fails, before starting anything, if a binary is missing or a
# port is already taken.
set -euo pipefail

CONFIG=${1:-config.yaml}
BIN=${CACHEPROXY:-bin/cacheproxy}
READY_TIMEOUT=${READY_TIMEOUT:-10} # seconds each backend may take to accept connections

die() { echo "run-local: $*" >&2; exit 1; }

[[ -f $CONFIG ]] || die "no configuration file '$CONFIG'"
[[ -x $BIN ]] || die "$BIN not found or not executable (run 'make build')"

summary=$("$BIN" -t -c "$CONFIG") || die "'$CONFIG' is not a valid configuration (see above)"

# Parse the -t summary: "pool NAME: PROTOCOL listen ..." then
# "  server NAME addr HOST:PORT weight W [replicas A,B]".
memcached_ports=() redis_ports=() replica_specs=()
proto=
while read -r first second third addr rest; do
	case $first in
	pool) proto=$third ;;
	server)
		[[ $addr == 127.0.0.1:* ]] || die "server $second: address $addr is not a 127.0.0.1 TCP port; start it yourself"
		port=${addr##*:}
		if [[ $proto == memcache ]]; then memcached_ports+=("$port"); else redis_ports+=("$port"); fi
		if [[ $rest == *" replicas "* ]]; then
			IFS=, read -r -a reps <<<"${rest##* replicas }"
			for r in "${reps[@]}"; do
				[[ $r == 127.0.0.1:* ]] || die "server $second: replica $r is not a 127.0.0.1 TCP port"
				replica_specs+=("${r##*:}:$port")
			done
		fi
		;;
	esac
done <<<"$summary"

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: install the Debian package $2"; }
((${#memcached_ports[@]} == 0)) || need memcached memcached
((${#redis_ports[@]} + ${#replica_specs[@]} == 0)) || need redis-server redis-server

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
all_ports=("${memcached_ports[@]}" "${redis_ports[@]}")
for spec in "${replica_specs[@]}"; do all_ports+=("${spec%%:*}"); done
for port in "${all_ports[@]}"; do
	port_open "$port" && die "port 127.0.0.1:$port is already in use; stop whatever listens there"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cacheproxy-run.XXXXXX")
pids=() proxy=
cleanup() {
	trap - EXIT INT TERM
	# The proxy first (SIGTERM drains it), then the backends.
	if [[ -n $proxy ]]; then kill "$proxy" 2>/dev/null || true; wait "$proxy" 2>/dev/null || true; fi
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_ready NAME PORT PID LOG: poll until PORT accepts, for READY_TIMEOUT.
wait_ready() {
	local deadline=$((SECONDS + READY_TIMEOUT))
	until port_open "$2"; do
		kill -0 "$3" 2>/dev/null || { tail -n 20 "$4" >&2; die "$1 on port $2 exited"; }
		((SECONDS < deadline)) || { tail -n 20 "$4" >&2; die "$1 on port $2 not accepting after ${READY_TIMEOUT}s"; }
		sleep 0.1
	done
	echo "run-local: $1 ready on 127.0.0.1:$2 (log $4)"
}

user=()
[[ $(id -u) != 0 ]] || user=(-u root) # memcached refuses to run as root without -u

start_memcached() {
	local log=$tmp/memcached-$1.log
	memcached -l 127.0.0.1 -p "$1" -U 0 -m 64 -t 1 "${user[@]}" >"$log" 2>&1 &
	pids+=($!)
	wait_ready memcached "$1" "$!" "$log"
}

start_redis() { # PORT [PRIMARY_PORT]
	local dir=$tmp/redis-$1 log=$tmp/redis-$1.log
	mkdir -p "$dir"
	local args=(--port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize no --logfile "$log")
	[[ -z ${2:-} ]] || args+=(--replicaof 127.0.0.1 "$2")
	redis-server "${args[@]}" >/dev/null 2>&1 &
	pids+=($!)
	wait_ready redis-server "$1" "$!" "$log"
}

for port in "${memcached_ports[@]}"; do start_memcached "$port"; done
for port in "${redis_ports[@]}"; do start_redis "$port"; done
for spec in "${replica_specs[@]}"; do start_redis "${spec%%:*}" "${spec##*:}"; done

echo "run-local: starting $BIN -c $CONFIG (Ctrl-C stops everything)"
# Started in the background and waited for, so that a signal to this script
# runs the trap at once (bash defers traps while a foreground child runs);
# the trap then stops the proxy with SIGTERM.
"$BIN" -c "$CONFIG" &
proxy=$!
set +e
wait "$proxy"
status=$?
set -e
proxy=
exit "$status"
