#!/usr/bin/env bash
# Times the trace replay: a thin wrapper around `gantry bench run --suite
# sim`, which replays the default pod list with every policy of the
# default list, one sample per seed (seeds 42-51; --quick: 42-45), and
# reports the GPU allocated at 100% arrived and the tasks placed per second
# of each policy.
#
#   bench/sim/bench.sh                          # seeds 42-51
#   bench/sim/bench.sh --quick --out sim-report
#   bench/sim/bench.sh --trace-dir ../shared/traces/alibaba-gpu-v2023
#
# Report the machine's load beside the figures: on a shared 2-core machine
# other work changes them (the report records the machine).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
(cd "$root" && go build -o bin/gantry ./cmd/gantry)
cd "$root"
exec bin/gantry bench run --suite sim "$@"
