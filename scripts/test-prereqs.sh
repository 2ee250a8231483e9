#!/usr/bin/env bash
# Checks, before `make test` runs anything, that every tool the tests drive
# is here, and fails at once naming what is missing and how to install it
# (.ci/run installs them on Debian). With everything present the tests run
# with GANTRY_REQUIRE_*: a test that would skip for lack of a tool fails.
set -uo pipefail
missing=()
pkgs=()
need() { # need <command> <debian package> <what needs it>
	if ! command -v "$1" >/dev/null 2>&1; then
		missing+=("$1 ($3)")
		pkgs+=("$2")
	fi
}
need chromium chromium "the web UI's browser tests"
need promtool prometheus "the monitoring kit's rule tests"
need docker-compose docker-compose "the Compose demo test"
need spin spin "the model check of the allocation lifecycle"
need gcc gcc "compiling the model checker"
need qemu-system-x86_64 qemu-system-x86 "the qemu driver's end-to-end tests (software emulation)"
need qemu-img qemu-utils "the qemu driver's copy-on-write overlays"
need apt-get apt "downloading the test guest's kernel (scripts/build-vm-guest.sh)"
need clang clang "compiling the wasm driver's C test modules"
need wasm-ld lld "linking the wasm driver's C test modules"
need ip iproute2 "the network namespaces of the partition test"
need iptables iptables "cutting a server off from its peers in the partition test"
if [[ $(id -u) != 0 ]]; then
	missing+=("root (the partition test makes network namespaces; the Docker end-to-end tests drive the engine)")
fi
if [[ ! -e /usr/lib/wasm32-wasi/libc.a ]]; then
	missing+=("wasi-libc (the wasm driver's C test modules)")
	pkgs+=(wasi-libc)
fi
if ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
	missing+=("the wasm32 compiler builtins (the wasm driver's C test modules)")
	pkgs+=(libclang-rt-14-dev-wasm32)
fi
if ! docker info >/dev/null 2>&1; then
	missing+=("a running Docker engine (the end-to-end tests)")
fi
trace="${GANTRY_TRACE_DIR:-}"
if [[ -z "$trace" ]]; then
	d="$PWD"
	while [[ "$d" != "/" && ! -d "$d/shared/traces/alibaba-gpu-v2023" ]]; do d="${d%/*}"; [[ -z "$d" ]] && d=/; done
	[[ -d "$d/shared/traces/alibaba-gpu-v2023" ]] && trace="$d/shared/traces/alibaba-gpu-v2023"
fi
if [[ -z "$trace" ]]; then
	missing+=("the Alibaba GPU trace: shared/traces/alibaba-gpu-v2023 above the repository, or GANTRY_TRACE_DIR (the trace replay's fidelity test)")
fi
if ((${#missing[@]})); then
	echo "make test: missing what the tests need:" >&2
	for m in "${missing[@]}"; do echo "  - $m" >&2; done
	if ((${#pkgs[@]})); then
		echo "install with: sudo apt-get install -y ${pkgs[*]}   (or run .ci/run, which installs them and runs the tests)" >&2
	fi
	echo "or run the tests that can run here, with the others skipped and counted: make test-available" >&2
	exit 1
fi
