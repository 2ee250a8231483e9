#!/usr/bin/env bash
# Builds the image the Compose demo runs: the static gantry binary in an
# otherwise empty image. Nothing is pulled.
#
#   deploy/compose/build-image.sh [tag]     (default gantry:local)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:-${GANTRY_IMAGE:-gantry:local}}"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$here/gantry" ./cmd/gantry)
docker build -q -t "$tag" "$here" >/dev/null
rm -f "$here/gantry"
echo "$tag"
