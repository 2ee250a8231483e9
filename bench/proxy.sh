#!/usr/bin/env bash
# Gantry's load balancer against nginx in front of the same three demo
# replicas: a thin wrapper around `gantry bench run --suite proxy` that
# first installs nginx from Debian's packages when it is missing (apt-get,
# needs root) and builds gantry and the demo image.
#
#   bench/proxy.sh                          # 3 rounds of 30 s each, alternating
#   bench/proxy.sh --rounds 5 --proxy-duration 20s --out proxy-report
#
# Extra arguments go to `gantry bench run`. The report (report.json,
# report.md, index.html with the latency distribution) lands in --out
# (default: gantry-bench-<date>-<time>). Everything the suite starts (gantry
# dev with its load balancer, three containers, nginx) is stopped and
# removed when it ends or on Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
	echo "==> installing nginx from Debian's packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq nginx >/dev/null
fi
echo "==> building gantry and the demo image" >&2
(cd "$root" && go build -o bin/gantry ./cmd/gantry)
"$root/scripts/build-demo-image.sh" >/dev/null
exec "$root/bin/gantry" bench run --suite proxy "$@"
