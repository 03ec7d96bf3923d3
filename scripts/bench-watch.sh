#!/usr/bin/env bash
# The watch page in Debian's chromium through the edge, as `make run` serves it (the origin's
# test source on conf/local.yaml's ladder, the edge, the chat relay; release builds, on free
# loopback ports): RUNS runs of SECONDS seconds each over HTTP/1.1 and over HTTPS (HTTP/2).
# Each run opens the stream list, follows the demo's link and watches; it reports startup
# (navigation to the first frame playing), stalls, and the latency twice: hls.js's `latency`
# (to the playlist's live edge) and glass-to-glass (now − the program date-time of the frame
# on screen, which the test source's burned-in clock carries). Prints each run's JSON, then a
# markdown table for BENCHMARKS.md (medians over the runs).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-3}
SECONDS_EACH=${BENCH_SECONDS:-60}
out=target/bench-watch
rm -rf "$out" && mkdir -p "$out"
pids=()
# Never `kill 0`: it would signal this whole process group.
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait' EXIT

cargo build --release --bins -p corral-origin -p corral-edge -p corral-chat-relay

# shellcheck source=scripts/bench-stack.sh
. scripts/bench-stack.sh
read -r o_http o_metrics rtmp srt e_http e_tls e_metrics c_http c_metrics <<<"$(free_ports 9)"

{
    origin_yaml_head "$o_http" "$o_metrics" "$rtmp" "$srt" "$out/archive"
    echo "streams: [ { name: demo, source: testsrc } ]"
} >"$out/origin.yaml"
bench_cert "$out"
cat >"$out/edge.yaml" <<YAML
listen: 127.0.0.1:$e_http
tls_listen: 127.0.0.1:$e_tls
tls: { cert: $out/edge.crt, key: $out/edge.key }
metrics_listen: 127.0.0.1:$e_metrics
origins: [ 127.0.0.1:$o_http ]
web: { root: web, chat_url: "http://127.0.0.1:$c_http" }
YAML
cat >"$out/chat.yaml" <<YAML
listen: 127.0.0.1:$c_http
metrics_listen: 127.0.0.1:$c_metrics
database: $out/chat.sqlite
cors_origins: [ "http://127.0.0.1:$e_http", "https://127.0.0.1:$e_tls" ]
guests: { enabled: true }
YAML

target/release/origin --config "$out/origin.yaml" >"$out/origin.log" 2>&1 &
pids+=($!)
target/release/edge --config "$out/edge.yaml" >"$out/edge.log" 2>&1 &
pids+=($!)
target/release/chat-relay --config "$out/chat.yaml" >"$out/chat.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$e_http/live/demo/720p/index.m3u8" >/dev/null && break
    sleep 0.1
done

echo "machine: $(nproc) cores; $RUNS runs of ${SECONDS_EACH} s per protocol; ladder of conf/local.yaml" >&2
for base in "http://127.0.0.1:$e_http" "https://127.0.0.1:$e_tls"; do
    for run in $(seq "$RUNS"); do
        node tests/browser/watch.js bench "$base" "$SECONDS_EACH" "$out/run-$run" | tee -a "$out/runs.jsonl"
    done
done
python3 - "$out/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| protocol | runs | startup | hls.js latency p50 / p95 | glass-to-glass p50 / p95 | stalls (total) | dropped frames |")
print("|---|---|---|---|---|---|---|")
for proto in ("http/1.1", "h2"):
    rs = [r for r in runs if r.get("protocol") == proto and not r["failures"]]
    if not rs:
        continue
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"| {proto} | {len(rs)} | {med(lambda r: r['startupMs']):.0f} ms "
          f"| {med(lambda r: r['latency']['p50']):.2f} / {med(lambda r: r['latency']['p95']):.2f} s "
          f"| {med(lambda r: r['glassToGlass']['p50']):.2f} / {med(lambda r: r['glassToGlass']['p95']):.2f} s "
          f"| {sum(r['stalls'] for r in rs)} | {med(lambda r: r['droppedFrames']):.0f} of {med(lambda r: r['decodedFrames']):.0f} |")
bad = [r for r in runs if r["failures"]]
if bad:
    print(f"\n{len(bad)} run(s) failed: {[r['failures'] for r in bad]}")
PY
