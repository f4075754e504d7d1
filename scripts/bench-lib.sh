# Shared by the scripts/redis-benchmark-*.sh scripts (sourced, not run):
# need BINARIES... checks the tools are installed; a scratch directory $dir
# and the pids started (pids+=($!)) are cleaned up on exit; free_port asks
# the kernel for a free loopback port; wait_port polls until one accepts.
need() {
  for b in "$@"; do
    command -v "$b" >/dev/null || { echo "missing $b (apt-get install redis-server redis-tools nutcracker)"; exit 1; }
  done
}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; exit 1; }
