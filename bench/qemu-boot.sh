#!/usr/bin/env bash
# Boot-to-healthy of one VM (the project's test guest, software emulation
# unless the node has KVM) through Gantry, beside the same QEMU command
# line started by hand, alternating, and the memory QEMU holds beyond the
# guest's RAM.
#
#   bench/qemu-boot.sh                  # 5 rounds
#   ROUNDS=5 BASE_PORT=27800 bench/qemu-boot.sh
#
# It builds gantry and the guest (scripts/build-vm-guest.sh), starts
# `gantry dev` on BASE_PORT..BASE_PORT+3 with its data in a temporary
# directory, then per round:
#   gantry   `gantry job run` of a one-VM job (http check every 250ms on
#            /healthz) until it returns healthy: wall time of the command.
#   by hand  the same command line as Gantry's driver builds (read from
#            that VM's /proc/<pid>/cmdline) started in its own directory,
#            /healthz polled with curl as the job's check polls a
#            starting task (a try 10ms in, then tries started ever less
#            often, the gap growing by half until 200ms have passed, then
#            doubling up to 250ms, each given up to 250ms:
#            a try made while the guest boots waits out its timeout):
#            time to the first 200.
#            The driver's network counting hands QEMU descriptors 3 and 4;
#            by hand they are /dev/null, so QEMU copies the same frames.
# Each VM's QEMU resident memory is read when healthy, with the resident
# part of the guest's RAM (its largest anonymous mapping in smaps) taken
# out: what QEMU itself adds. It prints every round and the medians, and
# Gantry's ratio to the hand-started VM (target: within 1.15x).
# Everything it starts is stopped on exit.
set -euo pipefail

rounds="${ROUNDS:-5}"
base="${BASE_PORT:-27800}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench-qemu.XXXXXX")"
api="http://127.0.0.1:${base}"
vmport=$((base + 10))
handport=$((base + 11))
devpid=""
handpid=""

cleanup() {
	[[ -n "$handpid" ]] && kill "$handpid" 2>/dev/null || true
	if [[ -n "$devpid" ]]; then
		"$root/bin/gantry" --address "$api" job stop vmbench >/dev/null 2>&1 || true
		kill "$devpid" 2>/dev/null || true
		wait "$devpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o bin/gantry ./cmd/gantry)
guest="$("$root/scripts/build-vm-guest.sh")"
gantry=("$root/bin/gantry" --address "$api")

"$root/bin/gantry" dev --data-dir "$work/data" --http-addr "127.0.0.1:$base" \
	--agent-addr "127.0.0.1:$((base + 1))" --etcd-client-url "http://127.0.0.1:$((base + 2))" \
	--etcd-peer-url "http://127.0.0.1:$((base + 3))" --node-name vmbench >"$work/dev.log" 2>&1 &
devpid=$!
# Until the node is ready, not only the API up: a job run before the
# node registers would wait unplaced.
for _ in $(seq 150); do "${gantry[@]}" node status 2>/dev/null | grep -q " ready " && break; sleep 0.2; done

cat >"$work/vm.yaml" <<SPEC
name: vmbench
type: service
groups:
  - name: vm
    restart: {attempts: 0, interval: 5m, delay: 1s, mode: fail}
    # job run returns when the deployment is healthy: with the default
    # min_healthy_time (10s) that would add 10s to every boot.
    update: {min_healthy_time: 0s}
    tasks:
      - name: guest
        driver: qemu
        config:
          kernel: $guest/vmlinuz
          initrd: $guest/initrd.img
          append: "console=ttyS0 quiet panic=-1"
          ports: [{name: http, to: 8080, static: $vmport}]
        resources: {cpu: 1000, memory: 256}
        checks: [{type: http, port: http, path: /healthz, interval: 250ms, timeout: 250ms, failures: 1000}]
SPEC

now() { date +%s.%N; }
# poll URL: until it answers 200, at the cadence of the job's check while
# its task starts: the first try 10ms in, then tries started 15, 22.5,
# ... ms apart until 200ms have passed, then the gap doubling, up to
# 250ms, each given 250ms (internal/agent/health.go).
poll() {
	local t gap=0.01 since=0.01
	sleep "$gap"
	while :; do
		t=$(now)
		curl -sf -m 0.25 "$1" >/dev/null && return 0
		gap=$(echo "f = 2; if ($since < 0.2) f = 1.5; g = $gap * f; if (g > 0.25) g = 0.25; g" | bc -l)
		since=$(echo "$since + $gap" | bc -l)
		sleep "$(echo "$gap - ($(now) - $t)" | bc | awk '{print ($1 > 0) ? $1 : 0}')"
	done
}
# overhead PID: QEMU's RSS minus the resident part of its largest
# anonymous mapping (the guest's RAM), and the RSS, in MiB.
overhead() {
	awk '/^[0-9a-f]+-[0-9a-f]+ / {anon = ($6 == ""); next}
	     /^Size:/ {size = $2} /^Rss:/ {if (anon && size > maxsize) {maxsize = size; guest = $2}; total += $2}
	     END {printf "%.0f %.0f", (total - guest) / 1024, total / 1024}' "/proc/$1/smaps"
}

declare -a g_t h_t g_o h_o
cmdline=""
for r in $(seq "$rounds"); do
	start=$(now)
	"${gantry[@]}" job run "$work/vm.yaml" >"$work/run.log" 2>&1 || { cat "$work/run.log"; exit 1; }
	g=$(echo "$(now) - $start" | bc)
	pid=$(pgrep -f "hostfwd=tcp:127.0.0.1:$vmport-" | head -n1)
	read -r go grss <<<"$(overhead "$pid")"
	if [[ -z "$cmdline" ]]; then
		tr '\0' '\n' <"/proc/$pid/cmdline" | sed "s/127.0.0.1:$vmport-/127.0.0.1:$handport-/" >"$work/cmdline"
		cmdline=1
	fi
	"${gantry[@]}" job stop vmbench >/dev/null
	for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done

	mkdir -p "$work/hand" && rm -f "$work/hand/qmp.sock"
	mapfile -t argv <"$work/cmdline"
	start=$(now)
	(cd "$work/hand" && exec "${argv[@]}" </dev/null >serial.log 2>stderr.log 3>/dev/null 4>/dev/null) &
	handpid=$!
	poll "http://127.0.0.1:$handport/healthz"
	h=$(echo "$(now) - $start" | bc)
	qpid=$(pgrep -f "hostfwd=tcp:127.0.0.1:$handport-" | head -n1)
	read -r ho hrss <<<"$(overhead "$qpid")"
	kill "$qpid" 2>/dev/null; wait "$handpid" 2>/dev/null || true
	handpid=""

	printf 'round %d: gantry %.2fs (QEMU RSS %s MiB, %s beyond guest RAM)  by hand %.2fs (QEMU RSS %s MiB, %s beyond guest RAM)\n' \
		"$r" "$g" "$grss" "$go" "$h" "$hrss" "$ho"
	g_t+=("$g"); h_t+=("$h"); g_o+=("$go"); h_o+=("$ho")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mg=$(median "${g_t[@]}"); mh=$(median "${h_t[@]}")
printf 'median boot-to-healthy: gantry %.2fs, by hand %.2fs, ratio %.2fx (target <= 1.15x)\n' "$mg" "$mh" "$(echo "$mg / $mh" | bc -l)"
printf 'median QEMU memory beyond the guest RAM: gantry %s MiB, by hand %s MiB (accounted per VM: 160 MiB)\n' "$(median "${g_o[@]}")" "$(median "${h_o[@]}")"
