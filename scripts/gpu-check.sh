#!/usr/bin/env bash
# Runs the GPU check (scripts/gpu-check.py) on a machine with an NVIDIA GPU
# and writes its artifact to OUT (default ./gpu-check-out): summary.md,
# report.json, nvidia-smi.xml, the agent's and server's /metrics, `gantry
# node status` and the dev log. It never changes a GPU setting.
#
#   scripts/gpu-check.sh [gantry-binary]
#
# Without a binary it builds one (cgo on: NVML needs it). The Python that
# runs the tasks must have torch: PYTHON (default python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-./gpu-check-out}
mkdir -p "$out"
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/gantry
	(cd "$here/.." && CGO_ENABLED=1 go build -o "$bin" ./cmd/gantry)
fi
py=${PYTHON:-$(command -v python3)}
exec "$py" "$here/gpu-check.py" --gantry "$bin" --out "$out" --python "$py"
