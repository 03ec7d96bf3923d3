#!/usr/bin/env bash
# Measures the origin on this machine and prints the numbers BENCHMARKS.md quotes:
#   1. the transcoder's real-time factor for the default ladder (conf/origin.yaml) and the
#      local one (conf/local.yaml), encoding the test pattern as fast as it can, RUNS times;
#   2. with the local stack live: part cadence, publish lag and playlist lag seen by VIEWERS
#      LL-HLS viewers (blocking reloads + hinted parts) for WATCH seconds, and the server's
#      blocking wake-up delay, from the origin's Prometheus histograms;
#   3. the origin's resident memory with one stream (and its ffmpeg child's, separately).
set -euo pipefail
cd "$(dirname "$0")/.."

CONTENT=${BENCH_CONTENT:-30}
RUNS=${BENCH_RUNS:-3}
WATCH=${BENCH_WATCH:-60}
VIEWERS=${BENCH_VIEWERS:-10}
HTTP=127.0.0.1:18081
METRICS=127.0.0.1:19101
origin=target/release/origin
loadtest=target/release/loadtest
out=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(ffmpeg -version | head -1 | cut -d' ' -f1-3)" >&2
for ladder in origin local; do
    for run in $(seq "$RUNS"); do
        echo "transcoder: conf/$ladder.yaml run $run of $RUNS ($CONTENT s of content)" >&2
        "$origin" --config "conf/$ladder.yaml" --bench-transcoder "$CONTENT" 2>/dev/null >"$out/transcoder-$ladder-$run.json"
    done
done

echo "live: conf/local.yaml with $VIEWERS viewers for $WATCH s" >&2
"$origin" --config conf/local.yaml --listen "$HTTP" --metrics-listen "$METRICS" 2>"$out/origin.log" &
pid=$!
for _ in $(seq 100); do
    curl -sf "http://$HTTP/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://$HTTP/live/demo/master.m3u8" >/dev/null
curl -sf "http://$METRICS/metrics" >"$out/metrics-before.txt"
"$loadtest" viewers "http://$HTTP/live/demo/master.m3u8" -n "$VIEWERS" --duration "$WATCH" --rendition 720p --format json 2>/dev/null >"$out/viewers.json"
curl -sf "http://$METRICS/metrics" >"$out/metrics-after.txt"
grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" >"$out/origin-rss.txt"
ffmpeg_pid=$(pgrep -P "$pid" | head -1)
grep -E '^VmRSS' "/proc/$ffmpeg_pid/status" >"$out/ffmpeg-rss.txt" || true
kill "$pid"
wait "$pid" || true
pid=

python3 scripts/bench_report.py "$out" "$RUNS" "$VIEWERS" "$WATCH"
