#!/usr/bin/env bash
# The scale benchmark, a thin wrapper around `gantry bench run --suite
# scale`: per round a fresh `gantry server` (embedded etcd, 8 GiB quota,
# heartbeat TTL 60s), then `gantry loadtest` with NODES simulated nodes
# (real agents, null driver, all in one process, their identities under
# /dev/shm) and JOBS jobs of TASKS allocations, through the real API, store
# and agent protocol. The report (report.json, report.md, index.html in
# --out) gives allocations per second placed and running, the time until
# all were placed and until all ran, the server's CPU seconds (also per
# 1,000 allocations), peak RSS (also per allocation) and etcd size, and
# the load tool's CPU seconds, peak RSS (also per allocation), live
# memory (heap and stacks) per simulated node and per running allocation,
# and goroutines. Every run
# ends with an exact-count check read back from the store (a consistent
# read per job): every job present, each slot held by exactly one running
# allocation; the suite fails when it does not hold.
#
# SERVERS=3 starts three `gantry server` processes per round forming one
# embedded etcd cluster, and points the load tool and every simulated node
# at all three (--address a,b,c): the cost of replication, with the
# servers' CPU seconds and peak RSS summed and per server. KILL_LEADER_AT
# (3 servers or more) kills -9 the leader once that many allocations are
# placed, a count (100000) or below 1 a fraction (0.5): the run must finish
# on the others, the check must still hold, and the report gives the
# failover as a client sees it (time to the next placement and to the next
# allocation reported running).
#
#   bench/scale.sh                       # 10,000 nodes, 1,000 jobs x 1,000 tasks
#   ROUNDS=3 SERVER_GOMEMLIMIT=10GiB LOAD_GOMEMLIMIT=10GiB bench/scale.sh   # the README's million, median of 3
#   NODES=1000 JOBS=100 TASKS=1000 bench/scale.sh
#   ROUNDS=3 NODES=10000 JOBS=100 TASKS=1000 bench/scale.sh --out scale-100k
#   SERVER_GOMEMLIMIT=10GiB LOAD_GOMEMLIMIT=12GiB bench/scale.sh   # soft memory limits (Go) for the two processes
#   SERVER_GOGC=200 LOAD_GOGC=200 bench/scale.sh                    # Go's collector target for each (100 by default)
#   SERVER_PPROF_ADDR=127.0.0.1:6060 LOAD_PPROF_ADDR=127.0.0.1:6061 bench/scale.sh   # Go's profiles of the (first) server and the load tool, e.g.
#       go tool pprof -top bin/gantry 'http://127.0.0.1:6060/debug/pprof/profile?seconds=60'
#   GANTRY_BIN=bin/gantry bench/scale.sh  # use a binary built beforehand (no Go toolchain needed)
#   SERVERS=3 NODES=10000 JOBS=100 TASKS=1000 bench/scale.sh                      # 100,000 on a 3-server cluster
#   SERVERS=3 KILL_LEADER_AT=0.5 NODES=10000 JOBS=200 TASKS=1000 bench/scale.sh   # 200,000, the leader killed halfway
#
# Extra arguments go to `gantry bench run`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${GANTRY_BIN:-}"
if [ -z "$bin" ]; then
	(cd "$root" && go build -o bin/gantry ./cmd/gantry)
	bin="$root/bin/gantry"
fi
exec "$bin" bench run --suite scale --scale-nodes "${NODES:-10000}" --scale-jobs "${JOBS:-1000}" \
	--scale-tasks "${TASKS:-1000}" --rounds "${ROUNDS:-1}" --scale-servers "${SERVERS:-1}" \
	--scale-kill-leader-at "${KILL_LEADER_AT:-0}" "$@"
