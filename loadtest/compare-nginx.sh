#!/usr/bin/env bash
# Corral's edge against nginx (Debian's package, proxy_cache with proxy_cache_lock on) in front
# of the same origin, in one run, on the same herds and the same cache-hit load:
#   1. herds (`loadtest herd URL -n N`): N players at once on the next hinted part, the next
#      blocking playlist and an unrequested segment; requests that reached the origin (counted
#      by the origin) and the waiters' extra latency over the first answer;
#   2. cache-hit requests/s with wrk (HTTP/1.1 keep-alive) for the multivariant playlist
#      (about 1 KiB) and a part of about 100 KiB;
#   3. resident memory of each (nginx: master and workers together).
# Run from the repository root after `make release` (needs target/release/{origin,edge,loadtest});
# installs nginx and wrk with apt-get when missing. HERD_CLIENTS (1000), HERD_ROUNDS (3),
# WRK_SECONDS (10) and WRK_CONNECTIONS (64) set the sizes. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${HERD_CLIENTS:-1000}
ROUNDS=${HERD_ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-10}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
ORIGIN=127.0.0.1:18181
ORIGIN_METRICS=127.0.0.1:19181
EDGE=127.0.0.1:18180
EDGE_METRICS=127.0.0.1:19180
NGINX=127.0.0.1:18190
PLAYLIST=/live/demo/720p/index.m3u8

for tool in nginx wrk; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
        echo "compare: installing $tool" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >/dev/null; }
    fi
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for b in origin edge loadtest; do
    [[ -x target/release/$b ]] || { echo "compare: target/release/$b is missing: run make release" >&2; exit 1; }
done

out=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -f $out/nginx.pid ]] && kill "$(cat "$out/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

cat >"$out/origin.yaml" <<YAML
log_level: warn
http: { listen: $ORIGIN }
metrics: { listen: $ORIGIN_METRICS }
transcoder:
  ladder:
    - { name: 720p, width: 1280, height: 720, bitrate: 2800k }
    - { name: 360p, width: 640, height: 360, bitrate: 800k }
streams:
  - name: demo
    source: testsrc
YAML
cat >"$out/edge.yaml" <<YAML
log_level: warn
metrics_listen: $EDGE_METRICS
YAML
mkdir -p "$out/nginx-cache" "$out/nginx-tmp"
nginx_user=""
[[ $(id -u) -eq 0 ]] && nginx_user="user root;"
cat >"$out/nginx.conf" <<NGINX
$nginx_user
worker_processes 2;
pid $out/nginx.pid;
error_log $out/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $out/nginx-tmp;
    proxy_temp_path $out/nginx-tmp;
    upstream origin { server $ORIGIN; keepalive 64; }
    proxy_cache_path $out/nginx-cache levels=1:2 keys_zone=hls:64m max_size=1g inactive=1m use_temp_path=off;
    server {
        listen $NGINX backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache hls;
            proxy_cache_key \$uri\$is_args\$args;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            proxy_cache_lock_age 10s;
            proxy_read_timeout 15s;
            add_header X-Cache \$upstream_cache_status;
        }
    }
}
NGINX

target/release/origin --config "$out/origin.yaml" >"$out/origin.log" 2>&1 &
pids+=($!)
target/release/edge --config "$out/edge.yaml" --listen "$EDGE" --origin "$ORIGIN" >"$out/edge.log" 2>&1 &
edge_pid=$!
pids+=($edge_pid)
"$nginx_bin" -c "$out/nginx.conf" -p "$out"
for _ in $(seq 200); do
    curl -sf "http://$EDGE$PLAYLIST" >/dev/null 2>&1 && curl -sf "http://$NGINX$PLAYLIST" >/dev/null 2>&1 && break
    sleep 0.2
done
sleep 3

rss_kb() { # PID... -> summed VmRSS in kB
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

echo "== herds: $CLIENTS players each, $ROUNDS rounds per server"
for round in $(seq "$ROUNDS"); do
    for server in edge:$EDGE nginx:$NGINX; do
        name=${server%%:*} addr=${server#*:}
        target/release/loadtest herd "http://$addr$PLAYLIST" -n "$CLIENTS" --rounds 1 --format json \
            --origin-metrics "http://$ORIGIN_METRICS/metrics" >"$out/herd-$name-$round.json"
        python3 - "$name" "$round" "$out/herd-$name-$round.json" <<'PY'
import json, sys
name, round_, path = sys.argv[1:]
for r in json.load(open(path))["herds"]:
    print(f"herd {name} round {round_} {r['object']}: ok {r['ok']}/{r['clients']}, origin requests {r['origin_requests']}, "
          f"leader {r['leader_ms']:.1f} ms, waiters woken after the leader p50 {r['wake_p50_ms']:.2f} ms "
          f"p99 {r['wake_p99_ms']:.2f} ms max {r['wake_max_ms']:.2f} ms; last byte after the leader's "
          f"p50 {r['done_p50_ms']:.1f} ms p99 {r['done_p99_ms']:.1f} ms")
PY
    done
done

echo "== cache hits: wrk, $WRK_CONNECTIONS connections, ${WRK_SECONDS}s, HTTP/1.1 keep-alive"
part=$(curl -sf "http://$EDGE$PLAYLIST" | python3 -c '
import sys
lines = sys.stdin.read().split("\n")
parts = [l.split("URI=\"")[1].split("\"")[0] for l in lines if l.startswith("#EXT-X-PART:")]
print(parts[0])')
part_path=/live/demo/720p/$part
curl -sf "http://$EDGE$part_path" -o "$out/part" && curl -sf "http://$NGINX$part_path" -o /dev/null
echo "part $part_path: $(stat -c %s "$out/part") bytes; multivariant: $(curl -sf "http://$EDGE/live/demo/master.m3u8" | wc -c) bytes"
for object in /live/demo/master.m3u8 "$part_path"; do
    for server in edge:$EDGE nginx:$NGINX; do
        name=${server%%:*} addr=${server#*:}
        rps=$(wrk -t2 -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" "http://$addr$object" | awk '/Requests\/sec/ {print $2}')
        echo "hits $name $object: $rps requests/s"
    done
done

nginx_pids="$(cat "$out/nginx.pid") $(pgrep -P "$(cat "$out/nginx.pid")" | tr '\n' ' ')"
echo "== memory"
echo "rss edge $(rss_kb "$edge_pid") kB"
# shellcheck disable=SC2086
echo "rss nginx $(rss_kb $nginx_pids) kB (master and workers)"
