#!/usr/bin/env bash
# Gantry's load balancer against nginx as a reverse proxy, in front of the
# same three demo backends, on this machine.
#
#   bench/proxy.sh                 # 3 rounds of 30 s each, alternating
#   ROUNDS=5 DURATION=30s bench/proxy.sh
#
# It installs nginx and wrk from Debian's packages (apt-get, needs root),
# builds gantry and the demo image, starts `gantry dev --lb` (access log
# off) with a service of three demo replicas, and points nginx
# (worker_processes = cores, upstream keepalive 64, access log off) at the
# same three containers. Then `wrk -t2 -c64 -d$DURATION --latency` runs
# against nginx and Gantry in turn, ROUNDS times each, and the script
# prints requests/s and p99 latency per round, the medians, and Gantry's
# ratios to nginx (targets: throughput >= 0.8x, p99 <= 1.5x).
#
# Everything it starts is stopped and removed on exit. Ports: 27700-27703
# (gantry), 28080 (gantry's proxy), 28081 (nginx); override with
# BASE_PORT (default 27700; the proxies use BASE_PORT+380 and +381).
set -euo pipefail

rounds="${ROUNDS:-3}"
duration="${DURATION:-30s}"
base="${BASE_PORT:-27700}"
lbport=$((base + 380))
ngxport=$((base + 381))
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench-proxy.XXXXXX")"
api="http://127.0.0.1:${base}"
cores="$(nproc)"

gantry_pid=""
cleanup() {
	set +e
	if [[ -f "$work/nginx.pid" ]]; then
		kill "$(cat "$work/nginx.pid")" 2>/dev/null
	fi
	if [[ -n "$gantry_pid" ]]; then
		"$work/gantry" --address "$api" job stop bench >/dev/null 2>&1
		kill "$gantry_pid" 2>/dev/null
		wait "$gantry_pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*" >&2; }

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
	log "installing nginx and wrk from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq nginx wrk >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

log "building gantry and the demo image"
(cd "$root" && go build -o "$work/gantry" ./cmd/gantry)
"$root/scripts/build-demo-image.sh" >/dev/null

log "starting gantry dev with its load balancer (access log off)"
"$work/gantry" dev --data-dir "$work/dev" --http-addr "127.0.0.1:${base}" \
	--agent-addr "127.0.0.1:$((base + 1))" --etcd-client-url "http://127.0.0.1:$((base + 2))" \
	--etcd-peer-url "http://127.0.0.1:$((base + 3))" --node-name bench --log-level warn \
	--lb --lb-access-log=false >"$work/dev.log" 2>&1 &
gantry_pid=$!
for _ in $(seq 1 100); do
	if curl -fsS "$api/v1/nodes" 2>/dev/null | grep -q '"status": "ready"'; then
		break
	fi
	sleep 0.2
done

cat >"$work/bench.yaml" <<EOF
name: bench
type: service
groups:
  - name: web
    count: 3
    update: {max_parallel: 1}
    services: [{name: bench, port: http, lb: {port: ${lbport}, policy: round_robin}}]
    tasks:
      - name: server
        driver: docker
        config: {image: gantry-demo:latest, ports: [{name: http, to: 8080}]}
        resources: {cpu: 100, memory: 64}
        checks: [{type: http, port: http, path: /healthz, interval: 5s, timeout: 1s}]
EOF
"$work/gantry" --address "$api" job run "$work/bench.yaml" >&2

# The same three containers, as the catalog lists them.
backends="$("$work/gantry" --address "$api" service status bench --json |
	jq -r '.endpoints[] | "        server \(.address):\(.port);"')"
[[ "$(grep -c server <<<"$backends")" == 3 ]] || { echo "want 3 endpoints, got: $backends" >&2; exit 1; }

cat >"$work/nginx.conf" <<EOF
worker_processes ${cores};
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path ${work}/nginx-body;
    proxy_temp_path ${work}/nginx-proxy;
    fastcgi_temp_path ${work}/nginx-fastcgi;
    uwsgi_temp_path ${work}/nginx-uwsgi;
    scgi_temp_path ${work}/nginx-scgi;
    upstream demo {
${backends}
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${ngxport};
        location / {
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$nginx_bin" -c "$work/nginx.conf"
sleep 0.5
curl -fsS "http://127.0.0.1:${ngxport}/" >/dev/null
curl -fsS "http://127.0.0.1:${lbport}/" >/dev/null

# wrk's p99 in milliseconds.
p99_ms() {
	awk '$1 == "99%" {
		v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
		printf "%.3f", v }' "$1"
}
rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }

log "warming up both proxies"
wrk -t2 -c64 -d5s "http://127.0.0.1:${ngxport}/" >/dev/null
wrk -t2 -c64 -d5s "http://127.0.0.1:${lbport}/" >/dev/null

printf '%-6s %-7s %12s %10s\n' round proxy requests/s p99_ms
for r in $(seq 1 "$rounds"); do
	for p in nginx gantry; do
		port=$ngxport
		[[ $p == gantry ]] && port=$lbport
		wrk -t2 -c64 -d"$duration" --latency "http://127.0.0.1:${port}/" >"$work/wrk-$p-$r.txt"
		if grep -q "Non-2xx\|Socket errors" "$work/wrk-$p-$r.txt"; then
			grep "Non-2xx\|Socket errors" "$work/wrk-$p-$r.txt" | sed "s/^/    $p round $r: /" >&2
		fi
		printf '%-6s %-7s %12s %10s\n' "$r" "$p" "$(rps "$work/wrk-$p-$r.txt")" "$(p99_ms "$work/wrk-$p-$r.txt")"
		echo "$p $(rps "$work/wrk-$p-$r.txt") $(p99_ms "$work/wrk-$p-$r.txt")" >>"$work/results.txt"
	done
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
n_rps="$(awk '$1 == "nginx" { print $2 }' "$work/results.txt" | median)"
g_rps="$(awk '$1 == "gantry" { print $2 }' "$work/results.txt" | median)"
n_p99="$(awk '$1 == "nginx" { print $3 }' "$work/results.txt" | median)"
g_p99="$(awk '$1 == "gantry" { print $3 }' "$work/results.txt" | median)"
echo
echo "medians over ${rounds} rounds of wrk -t2 -c64 -d${duration} on ${cores} cores:"
printf '  nginx   %8.0f requests/s   p99 %7.2f ms\n' "$n_rps" "$n_p99"
printf '  gantry  %8.0f requests/s   p99 %7.2f ms\n' "$g_rps" "$g_p99"
awk -v gr="$g_rps" -v nr="$n_rps" -v gp="$g_p99" -v np="$n_p99" 'BEGIN {
	printf "  gantry / nginx: throughput %.2fx (target >= 0.8x), p99 %.2fx (target <= 1.5x)\n", gr / nr, gp / np }'
