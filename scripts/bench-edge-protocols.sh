#!/usr/bin/env bash
# Cache hits by protocol: the same cached object (a 720p part, then the multivariant playlist,
# whose few hundred bytes leave mostly the per-request cost) fetched from the edge over
# HTTP/1.1 (plain and TLS), HTTP/2 and HTTP/3, alternating ROUNDS times for SECONDS each, CONNECTIONS clients with
# one request in flight each; prints each run's requests/s, latency and the edge's CPU time per
# request (from /proc), then the medians, for BENCHMARKS.md. The clients (loadtest hits)
# run on the same machine; the origin runs a one-rung ladder to leave the cores to the edge.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_EACH=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ORIGIN=127.0.0.1:18081
EDGE=127.0.0.1:18080
TLS=127.0.0.1:18443
loadtest=target/release/loadtest
out=$(mktemp -d)
trap 'kill "${origin_pid:-0}" 2>/dev/null || true; kill -INT "${edge_pid:-0}" 2>/dev/null || true; wait; rm -rf "$out"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=bench edge" -addext "subjectAltName=IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$out/edge.key" -out "$out/edge.crt" 2>/dev/null
cat >"$out/origin.yaml" <<YAML
# The archive (every broadcast, for DVR and VOD) stays in this run's scratch directory.
archive: { path: $out/archive }
http: { listen: $ORIGIN }
metrics: { listen: 127.0.0.1:19101 }
transcoder:
  x264_preset: veryfast
  ladder:
    - { name: 720p, width: 1280, height: 720, bitrate: 2800k }
streams:
  - { name: demo, source: testsrc }
YAML
cat >"$out/edge.yaml" <<YAML
listen: $EDGE
tls_listen: $TLS
tls: { cert: $out/edge.crt, key: $out/edge.key }
metrics_listen: 127.0.0.1:19102
log_level: warn
origins: [$ORIGIN]
YAML
target/release/origin --config "$out/origin.yaml" 2>"$out/origin.log" &
origin_pid=$!
target/release/edge --config "$out/edge.yaml" 2>"$out/edge.log" &
edge_pid=$!
part=""
for _ in $(seq 300); do
    part=$(curl -sf "http://$EDGE/live/demo/720p/index.m3u8" | sed -n 's/.*EXT-X-PART:.*URI="\([^"]*\)".*/\1/p' | tail -1 || true)
    [ -n "$part" ] && break
    sleep 0.1
done
[ -n "$part" ] || { echo "bench: the stream never went live" >&2; exit 1; }
part_path="/live/demo/720p/$part"
master_path="/live/demo/master.m3u8"
for path in "$part_path" "$master_path"; do
    echo "object: $path ($(curl -sf "http://$EDGE$path" | wc -c) bytes, cached)" >&2
done
echo "machine: $(nproc) cores; $CONNECTIONS connections, 1 request in flight each, ${SECONDS_EACH} s per run" >&2

for round in $(seq "$ROUNDS"); do
    for object in part:$part_path master:$master_path; do
        kind=${object%%:*}
        path=${object#*:}
        for run in h1:http://$EDGE h1tls:https://$TLS h2:https://$TLS h3:https://$TLS; do
            name=${run%%:*}
            base=${run#*:}
            protocol=${name%tls}
            "$loadtest" hits "$base$path" --protocol "$protocol" --duration "$SECONDS_EACH" --format json \
                --connections "$CONNECTIONS" --ca "$out/edge.crt" --server-pid "$edge_pid" 2>/dev/null \
                | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(name='$name', object='$kind'); print(json.dumps(r))" \
                | tee -a "$out/runs.jsonl" >&2
        done
    done
done

python3 - "$out/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
names = {"h1": "HTTP/1.1 (plain)", "h1tls": "HTTP/1.1 over TLS", "h2": "HTTP/2 (TLS)", "h3": "HTTP/3 (QUIC)"}
print("| object | protocol | requests/s | edge CPU per request | edge cores used | p50 | p99 | errors |")
print("|---|---|---|---|---|---|---|---|")
for obj, obj_label in (("part", "part, 720p"), ("master", "multivariant playlist")):
    for key, label in names.items():
        rs = [r for r in runs if r["name"] == key and r["object"] == obj]
        med = lambda f: statistics.median(r[f] for r in rs)
        print(f"| {obj_label} | {label} | {med('requests_per_second'):,.0f} | {med('server_cpu_us_per_request'):.1f} µs "
              f"| {med('server_cores'):.2f} | {med('p50_ms'):.2f} ms | {med('p99_ms'):.2f} ms | {sum(r['errors'] for r in rs)} |")
PY
