#!/usr/bin/env bash
# Starts a single-node Gantry cluster in the background and runs the demo
# web service on it (3 replicas of the demo HTTP server, health-checked).
#
#   scripts/demo.sh          # start (or reuse) the cluster, run examples/web.yaml
#   scripts/demo.sh stop     # stop the cluster (running containers stay; see README)
#
# The cluster keeps its state in .gantry-dev/ and listens on
# 127.0.0.1:7700 (API), 7701 (agent), 7702-7703 (embedded etcd).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="$root/.gantry-dev"
bin="$root/bin/gantry"
addr="${GANTRY_ADDRESS:-http://127.0.0.1:7700}"

if [[ "${1:-}" == "stop" ]]; then
	if [[ -f "$data/dev.pid" ]] && kill -0 "$(cat "$data/dev.pid")" 2>/dev/null; then
		kill "$(cat "$data/dev.pid")"
		echo "stopped gantry dev (pid $(cat "$data/dev.pid")); 'bin/gantry job stop web' first removes the demo's containers"
		rm -f "$data/dev.pid"
	else
		echo "no gantry dev running from $data"
	fi
	exit 0
fi

echo "==> building bin/gantry"
go build -o "$bin" ./cmd/gantry
echo "==> building the demo image gantry-demo:latest (FROM scratch, nothing pulled)"
scripts/build-demo-image.sh >/dev/null

mkdir -p "$data"
if [[ -f "$data/dev.pid" ]] && kill -0 "$(cat "$data/dev.pid")" 2>/dev/null; then
	echo "==> gantry dev already running (pid $(cat "$data/dev.pid"))"
else
	echo "==> starting gantry dev in the background (log: .gantry-dev/dev.log)"
	nohup "$bin" dev --data-dir "$data" >"$data/dev.log" 2>&1 &
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
  scripts/demo.sh stop              # stops the cluster
MSG
