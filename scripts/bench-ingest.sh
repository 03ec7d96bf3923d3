#!/usr/bin/env bash
# Measures ingest on this machine and prints the numbers BENCHMARKS.md quotes:
#   1. ingest-to-playlist delay: from a publisher's first media at the origin to the first part
#      listed (the origin logs it for every publish), for first publishes (the stream idle or
#      ended) and for publishers coming back within the grace period (reconnect recovery: the
#      slate is playing), over RTMP and over SRT, ROUNDS times each;
#   2. the origin's resident memory with no publisher, one and two live published streams
#      (and each stream's ffmpeg transcoder child separately).
# Publishers are ffmpeg sending 1280x720 at 30 fps, 2500 kbit/s H.264 and AAC, as OBS would.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-5}
HTTP=127.0.0.1:18082
METRICS=127.0.0.1:19102
RTMP=127.0.0.1:11935
SRT=127.0.0.1:19000
origin=target/release/origin
out=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "${origin_pid:-0}" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT

cat >"$out/origin.yaml" <<YAML
# The archive (every broadcast, for DVR and VOD) stays in this run's scratch directory.
archive: { path: $out/archive }
log_level: info
transcoder:
  ladder:
    - { name: 720p, width: 1280, height: 720, bitrate: 2800k }
    - { name: 480p, width: 854, height: 480, bitrate: 1400k }
    - { name: 360p, width: 640, height: 360, bitrate: 800k }
ingest:
  rtmp: { listen: $RTMP }
  srt: { listen: $SRT }
  reconnect_grace: 5
streams:
  - { name: one, source: publish, key: bench-key-one }
  - { name: two, source: publish, key: bench-key-two }
YAML

publish() { # URL FORMAT -> prints the PID
    ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
        -re -f lavfi -i sine=frequency=440:sample_rate=48000 \
        -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2500k -maxrate 2500k -bufsize 2500k \
        -c:a aac -b:a 128k -f "$2" "$1" >/dev/null 2>&1 &
    echo $!
}

state() { # STREAM -> its state
    curl -sf "http://$HTTP/api/streams" | python3 -c "import json,sys; print(next(s['state'] for s in json.load(sys.stdin)['streams'] if s['name']=='$1'))"
}

wait_state() { # STREAM STATE
    for _ in $(seq 300); do
        [[ "$(state "$1")" == "$2" ]] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1 to be $2" >&2
    return 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

"$origin" --config "$out/origin.yaml" --listen "$HTTP" --metrics-listen "$METRICS" 2>>"$out/origin.log" &
origin_pid=$!
for _ in $(seq 100); do curl -sf "http://$HTTP/healthz" >/dev/null && break; sleep 0.1; done
# Wait for the slate to be encoded, so reconnects play it.
for _ in $(seq 200); do grep -q "slate ready" "$out/origin.log" && break; sleep 0.1; done
echo "rss idle $(rss_kb "$origin_pid")" >"$out/rss.txt"

for protocol in rtmp srt; do
    if [[ $protocol == rtmp ]]; then url="rtmp://$RTMP/live/bench-key-one"; format=flv
    else url="srt://$SRT?streamid=bench-key-one&pkt_size=1316"; format=mpegts; fi
    for round in $(seq "$ROUNDS"); do
        echo "$protocol round $round of $ROUNDS" >&2
        echo "mark $protocol first" >>"$out/origin.log"
        p=$(publish "$url" "$format"); pids+=("$p")
        wait_state one live; sleep 3
        kill "$p"; wait "$p" 2>/dev/null || true
        wait_state one reconnecting
        sleep 2
        echo "mark $protocol reconnect" >>"$out/origin.log"
        p=$(publish "$url" "$format"); pids+=("$p")
        wait_state one live; sleep 3
        kill "$p"; wait "$p" 2>/dev/null || true
        # The grace period (5 s) runs out; the next round starts from an ended stream.
        wait_state one ended
    done
done

echo "live streams: one, then two" >&2
p1=$(publish "rtmp://$RTMP/live/bench-key-one" flv); pids+=("$p1")
# Steady state: the retained segments (playlist plus retention, about 50 s) are full.
wait_state one live; sleep 60
echo "rss one $(rss_kb "$origin_pid") $(rss_kb "$(pgrep -P "$origin_pid" | head -1)")" >>"$out/rss.txt"
p2=$(publish "srt://$SRT?streamid=bench-key-two&pkt_size=1316" mpegts); pids+=("$p2")
wait_state two live; sleep 60
children=$(pgrep -P "$origin_pid" | tr '\n' ' ')
echo "rss two $(rss_kb "$origin_pid") $(for c in $children; do rss_kb "$c"; done | tr '\n' ' ')" >>"$out/rss.txt"
cpu_load=$(uptime | sed 's/.*load average: //')
echo "load average during two live streams: $cpu_load" >>"$out/rss.txt"

python3 - "$out/origin.log" "$out/rss.txt" <<'PY'
import re, statistics, sys
log, rss = sys.argv[1], sys.argv[2]
kind, samples = None, {}
ansi = re.compile(r"\x1b\[[0-9;]*m")
for line in open(log, errors="replace"):
    line = ansi.sub("", line)
    m = re.match(r"mark (\w+) (\w+)", line)
    if m:
        kind = f"{m.group(1)} {m.group(2)}"
        continue
    m = re.search(r"delay_ms=(\d+)", line)
    if m and kind and "first part listed" in line:
        samples.setdefault(kind, []).append(int(m.group(1)))
        kind = None
print("| publish | samples | ingest-to-playlist delay, median | min | max |")
print("|---|---|---|---|---|")
for k in ("rtmp first", "rtmp reconnect", "srt first", "srt reconnect"):
    v = samples.get(k, [])
    if v:
        print(f"| {k} | {len(v)} | {statistics.median(v)} ms | {min(v)} ms | {max(v)} ms |")
print()
for line in open(rss):
    print(line.strip())
PY
