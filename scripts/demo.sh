#!/usr/bin/env bash
# Starts a single-node Gantry cluster in the background and runs the demo
# web service on it (3 replicas of the demo HTTP server, health-checked).
#
#   scripts/demo.sh          # start (or reuse) the cluster, run examples/web.yaml
#   scripts/demo.sh stop     # stop the demo's jobs (removing their containers), then the cluster
#   scripts/demo.sh stop --keep-jobs   # stop only the cluster; the jobs' containers keep running
#
# The cluster keeps its state in .gantry-dev/ and listens on
# 127.0.0.1:7700 (API), 7701 (agent), 7702-7703 (embedded etcd).
# GANTRY_DEMO_DIR (state directory), GANTRY_DEMO_PORT (first of the four
# ports) and GANTRY_BIN (a gantry binary already built: nothing is built)
# run a second demo beside the first, as the end-to-end test does.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="${GANTRY_DEMO_DIR:-$root/.gantry-dev}"
port="${GANTRY_DEMO_PORT:-7700}"
bin="${GANTRY_BIN:-$root/bin/gantry}"
addr="${GANTRY_ADDRESS:-http://127.0.0.1:$port}"

if [[ "${1:-}" == "stop" ]]; then
	# Stopping the demo stops its jobs first (their containers are removed),
	# then the cluster; --keep-jobs leaves the jobs' containers running.
	keep=false
	[[ "${2:-}" == "--keep-jobs" ]] && keep=true
	if [[ -f "$data/dev.pid" ]] && kill -0 "$(cat "$data/dev.pid")" 2>/dev/null; then
		if ! $keep; then
			"$bin" --address "$addr" job status 2>/dev/null | awk 'NR > 1 && $6 != "dead" && $6 != "stopped" { print $1 " " $2 }' |
				while read -r job ns; do
					echo "==> stopping job $job (namespace $ns)"
					"$bin" --address "$addr" -n "$ns" job stop "$job" || echo "    could not stop job $job; its containers may still run"
				done
		fi
		node="$("$bin" --address "$addr" node status --json 2>/dev/null | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)"
		pid="$(cat "$data/dev.pid")"
		kill "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "==> gantry dev (pid $pid) still runs 20s after SIGTERM; see $data/dev.log"
		else
			echo "==> stopped gantry dev (pid $pid)"
		fi
		rm -f "$data/dev.pid"
		left=""
		if [[ -n "$node" ]] && command -v docker >/dev/null; then
			left="$(docker ps -q --filter "label=gantry.node=$node" | wc -l)"
		fi
		echo "Left behind:"
		if [[ -n "$left" && "$left" != "0" ]]; then
			echo "  $left running container(s) of the demo's jobs (docker ps --filter label=gantry.node=$node); 'scripts/demo.sh' adopts them again"
		else
			echo "  no running container of the demo"
		fi
		echo "  the cluster's state in $data/ (remove it for a fresh start) and the image gantry-demo:latest"
	else
		echo "no gantry dev running from $data"
	fi
	exit 0
fi

if [[ -z "${GANTRY_BIN:-}" ]]; then
	# The NVML bindings (third-party cgo) use functions NVIDIA deprecated;
	# Gantry has no cgo of its own, so this silences only their warnings.
	export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
	echo "==> building bin/gantry (the first build compiles every dependency, etcd and the Docker client among them: minutes; later builds take seconds)"
	# -v names each package as it is compiled: a counter on one line.
	tty=""
	[[ -t 1 ]] && tty=1
	go build -v -o "$bin" ./cmd/gantry 2>&1 | awk '
		/^[A-Za-z0-9._~\/-]+$/ { n++; if (tty) printf "\r    compiled %d packages: %-70.70s", n, $0; next }
		{ if (tty && n) printf "\n"; print }
		END { if (n) printf "%s    compiled %d packages\n", (tty ? "\r" : ""), n }' tty="$tty"
fi
if [[ -z "${GANTRY_BIN:-}" ]] || ! docker image inspect gantry-demo:latest >/dev/null 2>&1; then
	echo "==> building the demo image gantry-demo:latest (FROM scratch, nothing pulled)"
	scripts/build-demo-image.sh >/dev/null
fi

mkdir -p "$data"
if [[ -f "$data/dev.pid" ]] && kill -0 "$(cat "$data/dev.pid")" 2>/dev/null; then
	echo "==> gantry dev already running (pid $(cat "$data/dev.pid"))"
else
	echo "==> starting gantry dev in the background (log: $data/dev.log)"
	nohup "$bin" dev --data-dir "$data" --http-addr "127.0.0.1:$port" --agent-addr "127.0.0.1:$((port + 1))" \
		--etcd-client-url "http://127.0.0.1:$((port + 2))" --etcd-peer-url "http://127.0.0.1:$((port + 3))" \
		>"$data/dev.log" 2>&1 &
	echo $! >"$data/dev.pid"
fi
for _ in $(seq 1 100); do
	if "$bin" --address "$addr" node status 2>/dev/null | grep -q ' ready '; then
		break
	fi
	sleep 0.2
done
"$bin" --address "$addr" node status
echo "==> running examples/web.yaml"
"$bin" --address "$addr" job run examples/web.yaml
cat <<MSG

The demo service is healthy. Open the web UI: $addr/ui/
Try:
  bin/gantry job status web
  bin/gantry alloc logs <alloc-id>
  bin/gantry alloc exec -i <alloc-id> /demo-app cat
  bin/gantry job run examples/batch.yaml
  bin/gantry job stop web           # removes the containers
  scripts/demo.sh stop              # stops the demo's jobs, then the cluster
MSG
