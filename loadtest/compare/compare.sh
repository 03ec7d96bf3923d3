#!/usr/bin/env bash
# Corral's edge against what a user would otherwise put in front of an origin: nginx
# (`proxy_cache_lock on`, `proxy_cache_use_stale updating`) and Varnish (its waiting list,
# streaming on), from Debian's packages, each configured here on a loopback port in front of
# the SAME origin. Every workload runs against the three in turn, round by round (the order
# rotates each round), so a slow moment of the machine falls on all three alike:
#
#   1. herds (`loadtest herd`): HERD_CLIENTS players, each on its own keep-alive connection,
#      ask at the same moment for the next hinted part before it exists, the blocking playlist
#      that will list the part after it, and a segment nobody has asked for. Reported: the
#      requests that reached the origin (counted by the origin) and how much later than the
#      first player the others got their answer (the cost of waiting on a shared fetch);
#   2. cache hits (`loadtest hits`, HTTP/1.1 keep-alive, HITS_CONNECTIONS connections for
#      HITS_SECONDS): requests/s and the server's CPU time per request (all its processes
#      together: nginx's workers, Varnish's manager and child) for the multivariant playlist
#      and a part;
#   3. resident memory of each after the run.
#
# The medians go to a table between the `compare.sh` markers of COMPARE_OUT (BENCHMARKS.md by
# default; `-` prints it only), with the machine, the versions and the ratios edge/nginx and
# edge/Varnish; the raw JSON reports stay in COMPARE_KEEP when that is set.
#
# Run from anywhere after `make release` (BIN, default target/release, must hold origin, edge
# and loadtest); installs nginx and Varnish with apt-get when missing. Sizes: HERD_CLIENTS
# (1000), ROUNDS (5), HITS_SECONDS (10), HITS_CONNECTIONS (32). Ports: PORT_BASE (18180) and
# the nine above it; everything listens on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

CLIENTS=${HERD_CLIENTS:-1000}
ROUNDS=${ROUNDS:-5}
HITS_SECONDS=${HITS_SECONDS:-10}
HITS_CONNECTIONS=${HITS_CONNECTIONS:-32}
BIN=${BIN:-target/release}
OUT_FILE=${COMPARE_OUT:-BENCHMARKS.md}
base=${PORT_BASE:-18180}
ORIGIN=127.0.0.1:$((base + 1))
ORIGIN_METRICS=127.0.0.1:$((base + 2))
EDGE=127.0.0.1:$((base + 3))
EDGE_METRICS=127.0.0.1:$((base + 4))
NGINX=127.0.0.1:$((base + 5))
VARNISH=127.0.0.1:$((base + 6))
PLAYLIST=/live/demo/720p/index.m3u8
MASTER=/live/demo/master.m3u8

need=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v varnishd >/dev/null 2>&1 || [[ -x /usr/sbin/varnishd ]] || need+=(varnish)
if [[ ${#need[@]} -gt 0 ]]; then
    echo "compare: installing ${need[*]} with apt-get" >&2
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { "${sudo[@]}" apt-get update -qq \
            && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
varnish_bin=$(command -v varnishd || echo /usr/sbin/varnishd)
for b in origin edge loadtest; do
    [[ -x $BIN/$b ]] || { echo "compare: $BIN/$b is missing: run make release (or set BIN)" >&2; exit 1; }
done

out=$(mktemp -d)
chmod 755 "$out" # Varnish's child and nginx's workers read below it
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -f $out/nginx.pid ]] && kill "$(cat "$out/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ -n ${COMPARE_KEEP:-} ]]; then
        mkdir -p "$COMPARE_KEEP" && cp "$out"/*.json "$out"/*.log "$COMPARE_KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- the origin: the test pattern in two renditions, as for a real event's ladder
cat >"$out/origin.yaml" <<YAML
# The archive (every broadcast, for DVR and VOD) stays in this run's scratch directory.
archive: { path: $out/archive }
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

# -- the edge, with its defaults
cat >"$out/edge.yaml" <<YAML
log_level: warn
metrics_listen: $EDGE_METRICS
YAML

# -- nginx: as its documentation and the LL-HLS guides set it up for a live origin
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
    proxy_cache_path $out/nginx-cache levels=1:2 keys_zone=hls:64m max_size=1g inactive=10m use_temp_path=off;
    server {
        listen $NGINX backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache hls;
            proxy_cache_key \$uri\$is_args\$args;
            # One request fills a missing object; the others wait for it (polling every 500 ms).
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            proxy_cache_lock_age 10s;
            # An expired object being refreshed is served stale meanwhile.
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
            # A blocking playlist or hinted part is held by the origin up to 3 target durations.
            proxy_read_timeout 15s;
            add_header X-Cache \$upstream_cache_status;
        }
    }
}
NGINX

# -- Varnish: its builtin VCL, but for the trap every LL-HLS deployment must close: an answer
# without a TTL (a 503 after a blocking timeout, a live playlist with max-age=0) would make the
# URL hit-for-miss for 2 minutes, uncoalesced. The origin says how long each may be kept.
cat >"$out/varnish.vcl" <<VCL
vcl 4.1;
backend origin {
    .host = "${ORIGIN%:*}";
    .port = "${ORIGIN#*:}";
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 15s;
}
sub vcl_backend_response {
    if (beresp.status >= 500 && beresp.http.Cache-Control ~ "max-age=[1-9]") {
        set beresp.ttl = 1s;
    }
    if (beresp.http.Cache-Control !~ "(no-store|private)") {
        return (deliver);
    }
}
VCL

"$BIN/origin" --config "$out/origin.yaml" >"$out/origin.log" 2>&1 &
pids+=($!)
"$BIN/edge" --config "$out/edge.yaml" --listen "$EDGE" --origin "$ORIGIN" >"$out/edge.log" 2>&1 &
edge_pid=$!
pids+=($edge_pid)
"$nginx_bin" -c "$out/nginx.conf" -p "$out" -e "$out/nginx-error.log"
# Threads made up front (a production setting; the waiting list itself holds no thread),
# a listen queue as deep as nginx's, the cache in memory like the edge's.
"$varnish_bin" -F -j none -n "$out/varnish" -a "$VARNISH" -f "$out/varnish.vcl" -s malloc,1g \
    -p thread_pools=2 -p thread_pool_min=500 -p thread_pool_max=5000 -p listen_depth=4096 \
    >"$out/varnish.log" 2>&1 &
varnish_pid=$!
pids+=($varnish_pid)

servers=(edge:$EDGE nginx:$NGINX varnish:$VARNISH)
deadline=$((SECONDS + 60))
for s in "${servers[@]}"; do
    until curl -sf "http://${s#*:}$PLAYLIST" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "compare: ${s%%:*} does not serve $PLAYLIST after 60 s; its log:" >&2
            tail -n 20 "$out/${s%%:*}.log" "$out/nginx-error.log" 2>/dev/null >&2 || true
            exit 1
        fi
        sleep 0.2
    done
done

server_pids() { # NAME -> comma-separated PIDs of every process of that server
    case $1 in
        edge) echo "$edge_pid" ;;
        nginx) { cat "$out/nginx.pid"; pgrep -P "$(cat "$out/nginx.pid")"; } | paste -sd, ;;
        varnish) { echo "$varnish_pid"; pgrep -P "$varnish_pid"; } | paste -sd, ;;
    esac
}
rss_kb() { # comma-separated PIDs -> their VmRSS summed, kB
    local total=0 p
    for p in ${1//,/ }; do
        total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
rotated() { # ROUND -> the servers, starting at a different one each round
    local r=$1 i n=${#servers[@]}
    for ((i = 0; i < n; i++)); do echo "${servers[$(((r + i) % n))]}"; done
}

fresh_part() { # -> the path of the newest part, cached by every server
    local part path s
    part=$(curl -sf "http://$EDGE$PLAYLIST" | awk -F'URI="' '/^#EXT-X-PART:/ {split($2, a, "\""); p = a[1]} END {print p}')
    path=/live/demo/720p/$part
    for s in "${servers[@]}"; do curl -sf "http://${s#*:}$path" -o /dev/null; done
    echo "$path"
}

echo "compare: $CLIENTS players per herd, $ROUNDS rounds; hits: $HITS_CONNECTIONS connections for ${HITS_SECONDS}s" >&2
for round in $(seq "$ROUNDS"); do
    while read -r s; do
        name=${s%%:*} addr=${s#*:}
        echo "compare: round $round: herds on $name" >&2
        "$BIN/loadtest" herd "http://$addr$PLAYLIST" -n "$CLIENTS" --rounds 1 --format json \
            --origin-metrics "http://$ORIGIN_METRICS/metrics" >"$out/herd-$name-$round.json"
    done < <(rotated "$round")
    # A part of this round (the origin forgets old ones: a cache that dropped one would get 404).
    part_path=$(fresh_part)
    for object in master:$MASTER part:$part_path; do
        while read -r s; do
            name=${s%%:*} addr=${s#*:}
            echo "compare: round $round: hits on $name, ${object%%:*}" >&2
            "$BIN/loadtest" hits "http://$addr${object#*:}" --connections "$HITS_CONNECTIONS" \
                --duration "${HITS_SECONDS}s" --server-pid "$(server_pids "$name")" --format json \
                >"$out/hits-$name-${object%%:*}-$round.json"
        done < <(rotated "$round")
    done
done

{
    for s in "${servers[@]}"; do
        name=${s%%:*}
        echo "{\"server\": \"$name\", \"rss_kb\": $(rss_kb "$(server_pids "$name")")}"
    done
} >"$out/memory.jsonl"

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
versions="$("$nginx_bin" -v 2>&1 | sed 's/.*version: //'), $("$varnish_bin" -V 2>&1 | head -1 | sed 's/ revision.*//; s/(//')"
machine="$(nproc) cores ($cpu), $mem_gib GiB, $(. /etc/os-release && echo "$PRETTY_NAME"); $versions"
command_line="HERD_CLIENTS=$CLIENTS ROUNDS=$ROUNDS HITS_SECONDS=$HITS_SECONDS HITS_CONNECTIONS=$HITS_CONNECTIONS loadtest/compare/compare.sh"
python3 "$here/table.py" "$out" "$machine" "$command_line" >"$out/table.md"
if [[ $OUT_FILE == - ]]; then
    cat "$out/table.md"
else
    python3 "$here/table.py" --splice "$OUT_FILE" "$out/table.md"
    echo "compare: the table is in $OUT_FILE" >&2
    cat "$out/table.md"
fi
