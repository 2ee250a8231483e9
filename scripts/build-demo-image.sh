#!/usr/bin/env bash
# Builds Gantry's demo workload (examples/demo-app) as a static binary and
# the local Docker image gantry-demo:latest FROM scratch, then prints the
# image id. Nothing is pulled: the image holds only the binary. It also
# builds the same program as a WebAssembly module (GOOS=wasip1) for the
# wasm driver's examples, into $GANTRY_DEMO_WASM (default
# /var/tmp/gantry-demo/demo-app.wasm).
#
#   scripts/build-demo-image.sh [TAG]      # default TAG: gantry-demo:latest
#
# Needs go and the docker CLI talking to an engine (DOCKER_HOST is honoured).
# Running it again with unchanged sources gives the same image id.
set -euo pipefail

tag="${1:-gantry-demo:latest}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(mktemp -d "${TMPDIR:-/tmp}/gantry-demo-build.XXXXXX")"
trap 'rm -rf "$build"' EXIT

(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false \
	-ldflags='-s -w -buildid=' -o "$build/demo-app" ./examples/demo-app)

wasm="${GANTRY_DEMO_WASM:-/var/tmp/gantry-demo/demo-app.wasm}"
mkdir -p "$(dirname "$wasm")"
(cd "$root" && GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false \
	-ldflags='-s -w -buildid=' -o "$build/demo-app.wasm" ./examples/demo-app)
mv -f "$build/demo-app.wasm" "$wasm.tmp.$$" && mv -f "$wasm.tmp.$$" "$wasm"

cat >"$build/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY demo-app /demo-app
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/demo-app"]
DOCKERFILE

# The classic builder needs no base image and no buildx plugin; its
# deprecation notice is shown only when the build fails.
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet \
	--label org.opencontainers.image.title=gantry-demo -t "$tag" "$build" 2>&1)"; then
	printf '%s\n' "$out" >&2
	exit 1
fi
docker image inspect --format '{{.Id}}' "$tag"
