#!/usr/bin/env bash
# Times `gantry sim` on this machine: one fgd replay of the default pod
# list (wall time of the whole command: load, order, replay, reduce),
# RUNS times, and prints each and the median. With ALL=1 it also times
# `gantry sim --all` (every policy on every pod list, seeds 42-51).
#
#   bench/sim/bench.sh                 # 5 fgd runs
#   RUNS=5 ALL=1 bench/sim/bench.sh    # and the full --all run
#
# TRACE_DIR defaults to ../shared/traces/alibaba-gpu-v2023. Report the
# machine (nproc) and its load (uptime) beside the figures: on a shared
# 2-core machine other work changes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
TRACE_DIR=${TRACE_DIR:-../shared/traces/alibaba-gpu-v2023}
RUNS=${RUNS:-5}
BIN=$(mktemp -d)/gantry-sim
go build -o "$BIN" ./internal/sim/cmd/gantry-sim
echo "machine: $(nproc) cores; $(uptime)"
times=()
for i in $(seq "$RUNS"); do
	start=$(date +%s.%N)
	"$BIN" --trace-dir "$TRACE_DIR" --pods "$TRACE_DIR/openb_pod_list_default.csv" --policy fgd --seeds 42 >/dev/null 2>&1
	end=$(date +%s.%N)
	t=$(awk "BEGIN {printf \"%.2f\", $end - $start}")
	times+=("$t")
	echo "fgd default seed 42, run $i: ${t} s"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median of " NR ": " a[int((NR+1)/2)] " s"}'
if [ "${ALL:-0}" = 1 ]; then
	start=$(date +%s.%N)
	"$BIN" --all --trace-dir "$TRACE_DIR" --seeds 42-51 --out "${OUT:-sim-out}" >/dev/null
	end=$(date +%s.%N)
	echo "gantry sim --all (7 policies x 24 pod lists x 10 seeds): $(awk "BEGIN {printf \"%.0f\", $end - $start}") s"
fi
