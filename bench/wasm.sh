#!/usr/bin/env bash
# Submit-to-healthy of one replica of the demo app as a WASI module (wasm
# driver) beside the same app as a container (docker driver), on one
# `gantry dev` as it starts by default; then resident memory per running
# instance of each kind, and its CPU while idle. The wasm starts come in
# three kinds:
#
#   cold   the compilation cache emptied and no spare runner: the runner
#          compiles the module
#   warm   the module started before on the node, as the agent leaves it
#          by default: a spare runner with the module compiled waits
#          (--wasm-spares, default 1), the task takes it
#   cache  the module compiled in the cache but no spare runner (ended
#          first): the runner starts and loads the module from the cache,
#          as every start does with --wasm-spares 0 and a replica does
#          beyond the spares
#
#   bench/wasm.sh                  # 5 runs of each kind, medians
#   RUNS=3 BASE_PORT=17140 bench/wasm.sh
#
# Each run is `gantry job run` of a fresh one-replica job with an HTTP
# check every 200ms, measured two ways: submit-to-healthy as the cluster
# recorded it (the job's submit_time, when the server registered it, to
# the task's Healthy event, its first passing check), and the CLI's wall
# clock until it reports the deployment successful (which adds the CLI's
# own process start, about 50 ms, and the reports of health to the
# server and back). The job is stopped before the next run. Spare
# runners are ended (pkill) before the cold and cache runs; the warm run,
# and the container run after it, wait until one is ready (a spare loads
# the module a second after a start, which would run beside them).
# Memory: with three replicas of each kind running, the resident set
# (VmRSS) and the memory of its own (Private_Clean + Private_Dirty: what
# no other process shares, unlike the gantry binary's pages) of each wasm
# runner process (the module, wazero and its compiled code) and of each
# container's demo-app process, plus the supervising executor of a wasm
# task, and of the spare runner waiting beside them, and the CPU each
# used over 10 idle seconds (an idle wasm service once used a whole
# CPU). Builds gantry, the demo image and the module
# first. Ports: BASE_PORT..BASE_PORT+3 (default 27800). Everything it
# starts is stopped.
set -euo pipefail

runs="${RUNS:-5}"
base="${BASE_PORT:-27800}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench-wasm.XXXXXX")"
api="http://127.0.0.1:${base}"
export GANTRY_ADDRESS="$api"
gantry_pid=""
cleanup() {
	set +e
	if [[ -n "$gantry_pid" ]]; then
		for j in bench-mem-wasm bench-mem-docker; do
			"$work/gantry" job stop "$j" >/dev/null 2>&1
		done
		kill "$gantry_pid" 2>/dev/null
		wait "$gantry_pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/gantry" ./cmd/gantry)
GANTRY_DEMO_WASM="$work/demo-app.wasm" "$root/scripts/build-demo-image.sh" >/dev/null
"$work/gantry" dev --data-dir "$work/data" --http-addr "127.0.0.1:$base" --agent-addr "127.0.0.1:$((base + 1))" \
	--etcd-client-url "http://127.0.0.1:$((base + 2))" --etcd-peer-url "http://127.0.0.1:$((base + 3))" \
	--node-name bench >"$work/dev.log" 2>&1 &
gantry_pid=$!
# Until the node is ready, not only the API up: a job run before the
# node registers would wait unplaced.
for _ in $(seq 60); do
	"$work/gantry" node status 2>/dev/null | grep -q " ready " && break
	sleep 0.5
done

spec() { # name kind count
	local task
	if [[ $2 == wasm ]]; then
		task="driver: wasm
        config: {module: $work/demo-app.wasm, ports: [{name: http}]}"
	else
		task="driver: docker
        config: {image: gantry-demo:latest, ports: [{name: http, to: 8080}]}"
	fi
	cat >"$work/$1.yaml" <<SPEC
name: $1
groups:
  - name: web
    count: $3
    update: {max_parallel: 3, min_healthy_time: 0s, healthy_deadline: 5m, progress_deadline: 10m}
    tasks:
      - name: server
        $task
        resources: {cpu: 100, memory: 64}
        checks: [{type: http, port: http, path: /healthz, interval: 200ms, timeout: 200ms, failures: 1000}]
SPEC
	echo "$work/$1.yaml"
}

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

run_once() { # name kind [no-spare]
	local f t0 t1
	f="$(spec "$1" "$2" 1)"
	sleep 1 # what the last run left behind (its stop, a spare's load) settles
	[[ ${3:-} == no-spare ]] && end_spares
	t0=$(date +%s.%N)
	if ! "$work/gantry" job run --timeout 10m "$f" >"$work/$1.out" 2>&1; then
		cat "$work/$1.out" >&2
		return 1
	fi
	t1=$(date +%s.%N)
	local cluster
	cluster=$(cluster_time "$1") || return 1
	"$work/gantry" job stop "$1" >/dev/null 2>&1
	echo "$(echo "$t1 - $t0" | bc) $cluster"
}

# cluster_time: seconds from the job's submission (its submit_time, when
# the server registered it) to its replica's first passing check (the
# task's Healthy event), as the cluster recorded them.
cluster_time() { # job
	local st id sub healthy
	st=$("$work/gantry" job status "$1" --json)
	id=$(grep -m1 -o '"id": *"[^"]*"' <<<"$st" | cut -d'"' -f4) # allocations come first
	sub=$(grep -m1 -o '"submit_time": *"[^"]*"' <<<"$st" | cut -d'"' -f4)
	healthy=$("$work/gantry" alloc status "$id" --json | grep -B1 '"type": "Healthy"' | grep -m1 -o '"time": *"[^"]*"' | cut -d'"' -f4)
	if [[ -z $sub || -z $healthy ]]; then
		echo "job $1: no submit time or no Healthy event recorded" >&2
		return 1
	fi
	echo "$(date -d "$healthy" +%s.%N) - $(date -d "$sub" +%s.%N)" | bc
}

spares="$work/data/agent/wasm-spares"
end_spares() { # and wait until the driver has seen them end
	pkill -f "wasm-run --spare $work/" 2>/dev/null || true
	for _ in $(seq 100); do
		pgrep -f "wasm-run --spare $work/" >/dev/null || break
		sleep 0.1
	done
	sleep 0.3
}
wait_spare() {
	for _ in $(seq 600); do
		compgen -G "$spares/*.ready" >/dev/null && return 0
		sleep 0.1
	done
	echo "no spare runner became ready within 60s; see $work/dev.log" >&2
	return 1
}

declare -A times ctimes
record() { # kind "wall cluster"
	local r
	r=($2)
	times[$1]+="${r[0]} "
	ctimes[$1]+="${r[1]} "
}
for i in $(seq "$runs"); do
	end_spares
	rm -rf "$work/data/agent/wasm-cache"
	r=$(run_once "bench-cold-$i" wasm no-spare) || exit 1
	record cold "$r"
	r=$(run_once "bench-cache-$i" wasm no-spare) || exit 1
	record cache "$r"
	wait_spare || exit 1
	r=$(run_once "bench-warm-$i" wasm) || exit 1
	record warm "$r"
	wait_spare || exit 1 # the next spare loads before the container starts, not beside it
	r=$(run_once "bench-docker-$i" docker) || exit 1
	record docker "$r"
	sleep 2
done
report() { # title, array name
	local -n t=$2
	echo "$1, one replica, $runs runs each (seconds):"
	for k in cold warm cache docker; do
		printf "  %-7s %s  median %s\n" "$k" "${t[$k]}" "$(tr ' ' '\n' <<<"${t[$k]}" | grep . | median)"
	done
	local cm m
	cm=$(tr ' ' '\n' <<<"${t[docker]}" | grep . | median)
	m=$(tr ' ' '\n' <<<"${t[warm]}" | grep . | median)
	echo "  warm wasm is $(echo "scale=2; $cm / $m" | bc)x faster than the container (target >= 5x)"
	m=$(tr ' ' '\n' <<<"${t[cache]}" | grep . | median)
	echo "  wasm from the cache alone is $(echo "scale=2; $cm / $m" | bc)x faster than the container"
}
report "submit-to-healthy as the cluster recorded it (job submit_time to the task's Healthy event)" ctimes
report "job run's wall clock (the CLI's process start, submission, following the deployment to its success, exit)" times

"$work/gantry" job run --timeout 10m "$(spec bench-mem-wasm wasm 3)" >/dev/null
"$work/gantry" job run --timeout 10m "$(spec bench-mem-docker docker 3)" >/dev/null
sleep 3
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
own() { awk '/^Private_(Clean|Dirty)/{s += $2} END {printf "%.1f", s / 1024}' "/proc/$1/smaps_rollup"; } # MiB
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, 1/100 s
# The instances: "kind pid extra-pid" (the executor of a wasm runner).
instances=()
for pid in $(pgrep -f "wasm-run "); do
	args=$(tr '\0' ' ' <"/proc/$pid/cmdline")
	[[ $args == "$work/gantry wasm-run "* ]] || continue # not the executors
	ready="${args% }"
	ready="${ready##* }"
	kind="wasm-runner"
	[[ $args == *"--spare"* && -e $ready ]] && kind="spare(idle)"
	instances+=("$kind $pid $(awk '{print $4}' "/proc/$pid/stat")")
done
for c in $(docker ps -q --filter "label=gantry.job=bench-mem-docker"); do
	instances+=("container $(docker inspect --format '{{.State.Pid}}' "$c") $c")
done
declare -A before
for inst in "${instances[@]}"; do
	read -r _ pid _ <<<"$inst"
	before[$pid]=$(ticks "$pid")
done
sleep 10
echo "per running instance, idle but for its check every 200 ms: resident memory (its own in brackets, MiB) and CPU over 10 s:"
for inst in "${instances[@]}"; do
	read -r kind pid extra <<<"$inst"
	cpu="$(echo "scale=1; ($(ticks "$pid") - ${before[$pid]}) / 10" | bc)%"
	if [[ $kind == container ]]; then
		printf "  %-12s %-7s %6.1f MiB (%5.1f)  cpu %5s   (docker stats: %s)\n" "$kind" "$pid" "$(echo "scale=1; $(rss "$pid") / 1024" | bc)" "$(own "$pid")" "$cpu" "$(docker stats --no-stream --format '{{.MemUsage}}' "$extra")"
	else
		printf "  %-12s %-7s %6.1f MiB (%5.1f)  cpu %5s   (its executor %5.1f MiB (%4.1f))\n" "$kind" "$pid" "$(echo "scale=1; $(rss "$pid") / 1024" | bc)" "$(own "$pid")" "$cpu" "$(echo "scale=1; $(rss "$extra") / 1024" | bc)" "$(own "$extra")"
	fi
done
