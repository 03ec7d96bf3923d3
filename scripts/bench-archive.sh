#!/usr/bin/env bash
# What archiving costs the origin: the release origin runs the local stack's ladder (720p,
# 480p, 360p and audio, conf/local.yaml's) on the test source for SECONDS, once with the
# archive off and once with it on (a local directory), and prints for each: the origin
# process's own CPU (ffmpeg, its child, excluded) and resident memory; with the archive on,
# also the bytes written per second, the write latency (median and 99th percentile, from
# corral_origin_archive_write_seconds), failed writes, and how long after the broadcast's
# end its VOD was ready. Both runs on the same machine, one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${BENCH_SECONDS:-60}
origin=target/release/origin
out=$(mktemp -d)
trap '[ -z "${pid:-}" ] || kill "$pid" 2>/dev/null || true; wait; rm -rf "$out"' EXIT

timeout 1800 cargo build --release -p corral-origin

free_ports() {
    python3 -c 'import socket; s = [socket.socket() for _ in "ab"]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])'
}

# CPU seconds (user + system) of process $1 itself.
cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

metric() {
    # awk reads to the end: leaving early would fail curl's write (and the pipeline).
    curl -s "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" 'index($0, m) == 1 && !found { v = $NF; found = 1 } END { print v }'
}

echo "machine: $(nproc) cores; ${SECONDS_EACH} s broadcast per run" >&2
printf '| archive | origin CPU (s per s of media) | origin RSS (MiB) | written (MB/s) | write p50 / p99 (ms) | failed writes | VOD ready after the end (s) |\n'
printf '|---|---|---|---|---|---|---|\n'
for mode in off on; do
    read -r port metrics_port <<<"$(free_ports)"
    enabled=$([ "$mode" = on ] && echo true || echo false)
    cat >"$out/origin.yaml" <<YAML
log_level: info
http: { listen: 127.0.0.1:$port }
metrics: { listen: 127.0.0.1:$metrics_port }
archive: { enabled: $enabled, path: $out/archive }
transcoder:
  x264_preset: veryfast
  ladder:
    - { name: 720p, width: 1280, height: 720, bitrate: 2800k }
    - { name: 480p, width: 854, height: 480, bitrate: 1400k }
    - { name: 360p, width: 640, height: 360, bitrate: 800k }
streams:
  - { name: demo, source: testsrc, testsrc: { duration: $SECONDS_EACH } }
YAML
    "$origin" --config "$out/origin.yaml" >"$out/origin-$mode.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/live/demo/360p/index.m3u8" >/dev/null && break
        sleep 0.1
    done
    start_cpu=$(cpu "$pid")
    sleep "$SECONDS_EACH"
    end_cpu=$(cpu "$pid")
    rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
    ready="-"
    written="-"
    latency="-"
    failed="-"
    if [ "$mode" = on ]; then
        for _ in $(seq 600); do
            [ "$(metric 'corral_origin_archive_sessions_total{result="archived"}')" = 1 ] && break
            sleep 0.1
        done
        ended=$(grep -m1 'session ended' "$out/origin-$mode.log" | cut -c1-27 || true)
        archived=$(grep -m1 'session archived' "$out/origin-$mode.log" | cut -c1-27 || true)
        ready=$(python3 -c "
from datetime import datetime
f = lambda s: datetime.fromisoformat(s.strip().rstrip('Z'))
print(f'{(f(\"$archived\") - f(\"$ended\")).total_seconds():.2f}')" 2>/dev/null || echo '?')
        bytes=$(metric 'corral_origin_archive_bytes_total')
        written=$(python3 -c "print(f'{$bytes / $SECONDS_EACH / 1e6:.2f}')")
        failed=$(metric 'corral_origin_archive_writes_total{result="failed"}')
        latency=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | python3 -c '
import sys
buckets = []
for line in sys.stdin:
    if line.startswith("corral_origin_archive_write_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
total = buckets[-1][1]
def q(p):
    for le, n in buckets:
        if n >= p * total:
            return f"<{le * 1000:g}"
print(f"{q(0.5)} / {q(0.99)}")')
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    per=$(python3 -c "print(f'{($end_cpu - $start_cpu) / $SECONDS_EACH:.3f}')")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$per" "$rss" "$written" "$latency" "$failed" "$ready"
done
