#!/usr/bin/env bash
# Submit-to-healthy of one replica of the demo app as a WASI module (wasm
# driver), cold (first compile: the compilation cache emptied before each
# run) and warm (cached), beside the same app as a container (docker
# driver), on one `gantry dev`; then resident memory per running instance
# of each kind.
#
#   bench/wasm.sh                  # 5 runs of each kind, medians
#   RUNS=3 BASE_PORT=17140 bench/wasm.sh
#
# Each run is `gantry job run` of a fresh one-replica job with an HTTP
# check every 200ms, timed from submission until the CLI reports the
# deployment healthy; the job is stopped before the next run. Memory: with
# three replicas of each kind running, the resident set (VmRSS) of each
# wasm runner process (the module, wazero and its compiled code) and of
# each container's demo-app process, plus the supervising executor of a
# wasm task. Builds gantry, the demo image and the module first. Ports:
# BASE_PORT..BASE_PORT+3 (default 27800). Everything it starts is stopped.
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

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

run_once() { # name kind
	local f t0 t1
	f="$(spec "$1" "$2" 1)"
	t0=$(date +%s.%N)
	if ! "$work/gantry" job run --timeout 10m "$f" >"$work/$1.out" 2>&1; then
		cat "$work/$1.out" >&2
		return 1
	fi
	t1=$(date +%s.%N)
	"$work/gantry" job stop "$1" >/dev/null 2>&1
	echo "$t1 - $t0" | bc
}

declare -A times
for i in $(seq "$runs"); do
	rm -rf "$work/data/agent/wasm-cache"
	times[cold]+="$(run_once "bench-cold-$i" wasm) " || exit 1
	times[warm]+="$(run_once "bench-warm-$i" wasm) " || exit 1
	times[docker]+="$(run_once "bench-docker-$i" docker) " || exit 1
	sleep 2
done
echo "submit-to-healthy, one replica, $runs runs each (seconds):"
for k in cold warm docker; do
	printf "  %-7s %s  median %s\n" "$k" "${times[$k]}" "$(tr ' ' '\n' <<<"${times[$k]}" | grep . | median)"
done
cm=$(tr ' ' '\n' <<<"${times[docker]}" | grep . | median)
wm=$(tr ' ' '\n' <<<"${times[warm]}" | grep . | median)
echo "  warm wasm is $(echo "scale=2; $cm / $wm" | bc)x faster than the container (target >= 5x)"

"$work/gantry" job run --timeout 10m "$(spec bench-mem-wasm wasm 3)" >/dev/null
"$work/gantry" job run --timeout 10m "$(spec bench-mem-docker docker 3)" >/dev/null
sleep 3
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
echo "resident memory per running instance (MiB):"
for pid in $(pgrep -f "wasm-run $work/data"); do
	ex=$(awk '{print $4}' "/proc/$pid/stat")
	printf "  wasm runner %-7s %6.1f   (its executor %5.1f)\n" "$pid" "$(echo "scale=1; $(rss "$pid") / 1024" | bc)" "$(echo "scale=1; $(rss "$ex") / 1024" | bc)"
done
for c in $(docker ps -q --filter "label=gantry.job=bench-mem-docker"); do
	pid=$(docker inspect --format '{{.State.Pid}}' "$c")
	printf "  container   %-7s %6.1f   (docker stats: %s)\n" "$pid" "$(echo "scale=1; $(rss "$pid") / 1024" | bc)" "$(docker stats --no-stream --format '{{.MemUsage}}' "$c")"
done
