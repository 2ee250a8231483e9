#!/usr/bin/env bash
# The scale benchmark: a fresh `gantry server` (embedded etcd), then
# `gantry loadtest` with NODES simulated nodes (real agents, null driver,
# all in one process) and JOBS jobs of TASKS allocations, through the real
# API, store and agent protocol. Prints the load test's figures plus the
# server's CPU time, peak memory and the etcd database size.
#
#   bench/scale.sh                       # 10,000 nodes, 1,000 jobs x 1,000 tasks
#   NODES=1000 JOBS=100 TASKS=1000 bench/scale.sh
#   SERVER_GOMEMLIMIT=10GiB LOAD_GOMEMLIMIT=12GiB bench/scale.sh   # soft memory limits (Go) for the two processes
#   GANTRY_BIN=bin/gantry bench/scale.sh  # use a binary built beforehand (no Go toolchain needed)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NODES="${NODES:-10000}" JOBS="${JOBS:-1000}" TASKS="${TASKS:-1000}"
PORT="${PORT:-7800}"
bin="${GANTRY_BIN:-}"
if [ -z "$bin" ]; then
	go build -o bin/gantry ./cmd/gantry
	bin=bin/gantry
fi
data="$(mktemp -d "${TMPDIR:-/tmp}/gantry-scale.XXXXXX")"
nodes="$(mktemp -d "${NODES_TMPDIR:-/dev/shm}/gantry-scale-nodes.XXXXXX" 2>/dev/null || mktemp -d "${TMPDIR:-/tmp}/gantry-scale-nodes.XXXXXX")"
trap 'kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; rm -rf "$data" "$nodes"' EXIT

GOMEMLIMIT="${SERVER_GOMEMLIMIT:-}" GANTRY_PPROF_ADDR="${PPROF:-}" "$bin" server --insecure --data-dir "$data/server" --http-addr "127.0.0.1:$PORT" \
	--etcd-client-url "http://127.0.0.1:$((PORT + 2))" --etcd-peer-url "http://127.0.0.1:$((PORT + 3))" \
	--etcd-quota-bytes $((8 << 30)) --heartbeat-ttl 60s --log-level warn >"${SERVER_LOG:-$data/server.log}" 2>&1 &
spid=$!
for _ in $(seq 1 100); do
	curl -sf "http://127.0.0.1:$PORT/v1/status" >/dev/null && break
	sleep 0.2
done
ticks=$(getconf CLK_TCK)
cpu0=$(awk '{print $14 + $15}' "/proc/$spid/stat")
start=$(date +%s.%N)
GOMEMLIMIT="${LOAD_GOMEMLIMIT:-}" GANTRY_PPROF_ADDR="${LPPROF:-}" "$bin" loadtest --address "http://127.0.0.1:$PORT" --nodes "$NODES" --jobs "$JOBS" --tasks "$TASKS" \
	--data-dir "$nodes" --json >"$data/result.json"
end=$(date +%s.%N)
cpu1=$(awk '{print $14 + $15}' "/proc/$spid/stat")
peak=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
db=$(stat -c %s "$data/server/etcd/member/snap/db")
cat "$data/result.json"
awk -v c0="$cpu0" -v c1="$cpu1" -v t="$ticks" -v s="$start" -v e="$end" -v p="$peak" -v db="$db" 'BEGIN {
	printf "server cpu        %.1f s over %.1f s wall (%.2f cores)\n", (c1 - c0) / t, e - s, (c1 - c0) / t / (e - s)
	printf "server peak RSS   %.0f MiB\n", p / 1024
	printf "etcd db size      %.0f MiB\n", db / 1048576
}'
