#!/usr/bin/env bash
# The scheduler's own benchmark alone and while the vSphere collector runs
# against a simulated 1,000 hosts and 10,000 VMs, alternating, and the
# ratio of the medians (issue 18: "the scheduler's own benchmark loses less
# than 10%").
#
#   bench/vsphere-sched.sh                      # 5 pairs of BenchmarkPlace/cpu/5000, 40 iterations each
#   RUNS=3 BENCHTIME=60x bench/vsphere-sched.sh
#   SIM_URL=https://127.0.0.1:18989/sdk SIM_CA=ca.pem SIM_PW=pw bench/vsphere-sched.sh   # reuse a running simulator
#   COLLECTOR_CPUS=0,1 bench/vsphere-sched.sh   # the collector may use both cores (the simulator's too)
#
# Pinning (2 cores): `gantry vsphere simulate` (standing for the remote
# vCenter) on core 1; the collector (vsbench -url: one vsphere.Collector at
# the real 20 s interval, in its own process) and the benchmark
# (`go test -bench BenchmarkPlace/cpu/5000 -cpu 1`, as in the README's
# figures) together on core 0, so that every CPU second the collector
# spends is taken from the scheduler: a worst case for the leader
# (COLLECTOR_CPUS changes the collector's cores). For an
# "alone" run the collector is frozen (SIGSTOP) right after a round ended;
# for a "with" run it runs (SIGCONT), and the rounds that end during it
# are reported. The order
# alternates (alone, with; with, alone; ...). Output: each run's
# placements/s (wall clock of the timed part) and placements per
# CPU-second, the medians, the ratio with/alone, and the collector's round
# times. Everything it started is stopped when it ends or on Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=${RUNS:-5}
BENCH=${BENCH:-'BenchmarkPlace/cpu/5000$'}
BENCHTIME=${BENCHTIME:-40x}
SIM_PORT=${SIM_PORT:-18989}
COLLECTOR_CPUS=${COLLECTOR_CPUS:-0}
out=${OUT:-$(mktemp -d /tmp/gantry-vsphere-sched.XXXXXX)}
mkdir -p "$out"
echo "==> building gantry, vsbench and the scheduler's benchmark into $out" >&2
(cd "$root" && go build -o "$out/gantry" ./cmd/gantry && go build -o "$out/vsbench" ./internal/vsphere/vsbench &&
	go test -c -o "$out/sched.test" ./internal/scheduler)

pids=()
col=""
cleanup() {
	[[ -n "$col" ]] && kill -CONT "$col" 2>/dev/null || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if [[ -z "${SIM_URL:-}" ]]; then
	echo "==> starting the simulator (1,000 hosts, 10,000 VMs; it took 2-15 minutes here)" >&2
	taskset -c 1 "$out/gantry" vsphere simulate --listen "127.0.0.1:$SIM_PORT" --clusters 10 --cluster-hosts 100 --vms 1000 \
		--standalone-hosts 0 --datastores 10 --write-ca "$out/ca.pem" --write-password "$out/pw" >"$out/sim.log" 2>&1 &
	pids+=($!)
	until grep -q "Simulated vCenter at" "$out/sim.log"; do
		kill -0 "${pids[0]}" 2>/dev/null || { cat "$out/sim.log" >&2; exit 1; }
		sleep 5
	done
	SIM_URL="https://127.0.0.1:$SIM_PORT/sdk" SIM_CA="$out/ca.pem" SIM_PW="$out/pw"
fi

echo "==> starting the collector against $SIM_URL on cores $COLLECTOR_CPUS" >&2
taskset -c "$COLLECTOR_CPUS" "$out/vsbench" -url "$SIM_URL" -ca "$SIM_CA" -password-file "$SIM_PW" >"$out/collector.log" 2>&1 &
col=$!
pids+=("$col")
rounds() { grep -c '^round ended' "$out/collector.log" || true; }
# Steady state: the first inventory and two rounds behind it.
until [[ $(rounds) -ge 2 ]]; do
	kill -0 "$col" 2>/dev/null || { cat "$out/collector.log" >&2; exit 1; }
	sleep 1
done
grep '^first full inventory' "$out/collector.log" >&2 || true

# bench prints "placements/s placements/cpu-s" of one run.
bench() {
	GANTRY_BENCH_REGRET=0 taskset -c 0 "$out/sched.test" -test.run '^$' -test.bench "$BENCH" -test.benchtime "$BENCHTIME" -test.cpu 1 |
		awk '/placements\/s/ { for (i = 2; i <= NF; i++) { if ($i == "placements/s") w = $(i-1); if ($i == "placements/cpu-s") c = $(i-1) } print w, c }'
}
alone() {
	# Freeze the collector between rounds, never inside one.
	local n
	n=$(rounds)
	until [[ $(rounds) -gt $n ]]; do sleep 0.1; done
	kill -STOP "$col"
	local r
	r=$(bench)
	kill -CONT "$col"
	echo "$r"
}
with() {
	local n0 r
	n0=$(rounds)
	r=$(bench)
	# The rounds that ended while the benchmark ran beside them (a round
	# that a freeze interrupted would count its frozen time).
	grep '^round ended' "$out/collector.log" | tail -n +$((n0 + 1)) | awk '{ print $5 }' >>"$out/rounds.txt"
	echo "$r $(($(rounds) - n0))"
}

: >"$out/runs.txt"
: >"$out/rounds.txt"
for i in $(seq "$RUNS"); do
	if ((i % 2)); then
		a=$(alone)
		w=$(with)
	else
		w=$(with)
		a=$(alone)
	fi
	echo "run $i: alone ${a% *} placements/s (${a#* } per cpu-s); with collector ${w%% *} placements/s, $(echo "$w" | cut -d' ' -f2) per cpu-s, $(echo "$w" | cut -d' ' -f3) rounds during it" | tee -a "$out/runs.txt"
	echo "$a" | cut -d' ' -f1 >>"$out/alone.txt"
	echo "$w" | cut -d' ' -f1 >>"$out/with.txt"
	echo "$a" | cut -d' ' -f2 >>"$out/alone-cpu.txt"
	echo "$w" | cut -d' ' -f2 >>"$out/with-cpu.txt"
done
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ma=$(median "$out/alone.txt") mw=$(median "$out/with.txt")
mac=$(median "$out/alone-cpu.txt") mwc=$(median "$out/with-cpu.txt")
echo "median of $RUNS: alone $ma placements/s, with the collector $mw: ratio $(awk -v a="$ma" -v w="$mw" 'BEGIN { printf "%.3f", w / a }') (per cpu-s: $mac vs $mwc, ratio $(awk -v a="$mac" -v w="$mwc" 'BEGIN { printf "%.3f", w / a }'))"
echo "collector rounds during the 'with' runs: $(wc -l <"$out/rounds.txt"), median $(median "$out/rounds.txt") s, max $(sort -g "$out/rounds.txt" | tail -1) s (interval 20 s)"
echo "(runs, rounds and logs in $out)"
