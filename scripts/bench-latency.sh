#!/usr/bin/env bash
# Latency and stalls of stock players through the edge, as `make run` serves them (release
# builds, conf/local.yaml's ladder and LL-HLS timing, the edge with TLS), on free loopback
# ports. For each source, each player and each protocol, one run of SECONDS seconds of
# tests/browser/stock.js (hls.js with lowLatencyMode; Shaka Player with lowLatencyMode), which
# reports stalls, startup, the rung played, the player's latency and glass-to-glass by program
# date-time, and saves the picture's bottom every 5 s; tesseract reads the UTC clock burnt into
# each, which gives glass-to-glass by the picture itself. The budget's stages come from the
# origin (publish lag: from the wall time a part's media ends to its publication, its
# histogram over the run), the playlist (part target, PART-HOLD-BACK) and the player (how long
# a part takes to arrive). Prints each run's JSON, then a markdown table for BENCHMARKS.md.
# hls.js's own log lines about stalls, gaps and nudges ride along in each run's `trace`, so a
# stall comes with the player's account of it.
#
# Sources: `testsrc` (the origin's built-in test source) and `rtmp` (ffmpeg publishing 30 fps
# with a 2 s GOP over RTMP, its own clock burnt in, transcoded by the origin's ladder).
#
#   BENCH_SECONDS (600)  BENCH_SOURCES ("testsrc rtmp")  BENCH_PLAYERS ("hlsjs shaka")
#   BENCH_PROTOCOLS ("h1 h2 h3")  BENCH_PART (conf/local.yaml's llhls.part_target)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${BENCH_SECONDS:-600}
SOURCES=${BENCH_SOURCES:-testsrc rtmp}
PLAYERS=${BENCH_PLAYERS:-hlsjs shaka}
PROTOCOLS=${BENCH_PROTOCOLS:-h1 h2 h3}
out=target/bench-latency
rm -rf "$out" && mkdir -p "$out"
pids=()
# Never `kill 0`: it would signal this whole process group.
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}
trap stop_all EXIT

cargo build --release --bins -p corral-origin -p corral-edge

# shellcheck source=scripts/bench-stack.sh
. scripts/bench-stack.sh
bench_cert "$out"

# The publisher: 720p30 colour bars with the UTC clock burnt in at capture, 2 s GOP, over RTMP.
publish() { # URL
    ffmpeg -hide_banner -loglevel error -nostdin \
        -re -f lavfi -i "testsrc2=size=1280x720:rate=30,drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:fontsize=48:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=8:x=(w-tw)/2:y=h-th-24:text='%{gmtime\:%X.%3N} UTC'" \
        -re -f lavfi -i sine=frequency=1000:sample_rate=48000 \
        -c:v libx264 -preset veryfast -tune zerolatency -g 60 -keyint_min 60 -sc_threshold 0 \
        -b:v 3000k -maxrate 3000k -bufsize 3000k -c:a aac -b:a 128k -f flv "$1" >"$out/publisher.log" 2>&1 &
    pids+=($!)
}

metrics() { curl -sf "http://127.0.0.1:$o_metrics/metrics"; }

echo "machine: $(nproc) cores; ${SECONDS_EACH} s per run; sources: $SOURCES; players: $PLAYERS; protocols: $PROTOCOLS" >&2
for source in $SOURCES; do
    read -r o_http o_metrics rtmp srt e_http e_tls e_metrics <<<"$(free_ports 7)"
    dir="$out/$source"
    mkdir -p "$dir"
    if [[ $source == testsrc ]]; then
        stream="name: demo, source: testsrc"
        name=demo
    else
        stream="name: studio, source: publish, key: bench-key"
        name=studio
    fi
    {
        # The ladder and LL-HLS timing of make run, from its own config.
        origin_yaml_head "$o_http" "$o_metrics" "$rtmp" "$srt" "$dir/archive"
        if [[ -n ${BENCH_PART:-} ]]; then
            echo "llhls: { part_target: $BENCH_PART }"
        else
            sed -n '/^llhls:/,/^[a-z]/p' conf/local.yaml | sed '$d'
        fi
        echo "streams: [ { $stream } ]"
    } >"$dir/origin.yaml"
    cat >"$dir/edge.yaml" <<YAML
listen: 127.0.0.1:$e_http
tls_listen: 127.0.0.1:$e_tls
tls: { cert: $out/edge.crt, key: $out/edge.key }
metrics_listen: 127.0.0.1:$e_metrics
origins: [ 127.0.0.1:$o_http ]
YAML
    target/release/origin --config "$dir/origin.yaml" >"$dir/origin.log" 2>&1 &
    pids+=($!)
    target/release/edge --config "$dir/edge.yaml" >"$dir/edge.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$o_http/healthz" >/dev/null && break
        sleep 0.1
    done
    [[ $source == rtmp ]] && publish "rtmp://127.0.0.1:$rtmp/live/bench-key"
    top=$(sed -n '/^  ladder:/,/^[a-z]/p' conf/local.yaml | grep -m1 -o 'name: [^,]*' | cut -d' ' -f2)
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$e_http/live/$name/$top/index.m3u8" >/dev/null && break
        sleep 0.1
    done
    if ! curl -sf "http://127.0.0.1:$e_http/live/$name/$top/index.m3u8" >"$dir/playlist.m3u8"; then
        echo "$source: the stream never went live; see $dir/origin.log" >&2
        stop_all
        continue
    fi
    for player in $PLAYERS; do
        for protocol in $PROTOCOLS; do
            case $protocol in
                h1) url="http://127.0.0.1:$e_http/live/$name/master.m3u8"; cert= ;;
                h2) url="https://127.0.0.1:$e_tls/live/$name/master.m3u8"; cert= ;;
                h3) url="https://127.0.0.1:$e_tls/live/$name/master.m3u8"; cert=$out/edge.crt ;;
            esac
            run="$dir/$player-$protocol"
            metrics >"$run.before.prom"
            STOCK_TRACE=1 STOCK_CLOCK_DIR="$run" node tests/browser/stock.js "$player" "$url" "$SECONDS_EACH" $cert >"$run.json" ||
                echo "{\"player\": \"$player\", \"failed\": true}" >"$run.json"
            metrics >"$run.after.prom"
            echo "$source $player $protocol: $(cat "$run.json")" >&2
        done
    done
    # The server's side of the clock: the first frame of each of the last complete segments of
    # the top rung, as the origin serves it, with its program date-time (the report reads the
    # clock off each and compares).
    mkdir -p "$dir/segments"
    curl -sf "http://127.0.0.1:$o_http/live/$name/$top/index.m3u8" >"$dir/segments/index.m3u8"
    python3 - "$dir/segments/index.m3u8" <<'PY' | while read -r pdt init uri; do
import re, sys
text = open(sys.argv[1]).read()
init = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)[-1]
for pdt, uri in re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)\n(?:#EXT-X-PART:[^\n]*\n)*#EXTINF:[^\n]*\n(\S+)", text)[-5:]:
    print(pdt, init, uri)
PY
        base="http://127.0.0.1:$o_http/live/$name/$top"
        { curl -sf "$base/$init"; curl -sf "$base/$uri"; } |
            ffmpeg -hide_banner -loglevel error -i - -frames:v 1 \
                -vf "crop=iw:ih/5:0:ih*4/5,format=rgb24,geq=r='255*(1-gt(r(X\,Y)\,190)*gt(g(X\,Y)\,190)*gt(b(X\,Y)\,190))':g='255*(1-gt(r(X\,Y)\,190)*gt(g(X\,Y)\,190)*gt(b(X\,Y)\,190))':b='255*(1-gt(r(X\,Y)\,190)*gt(g(X\,Y)\,190)*gt(b(X\,Y)\,190))'" \
                -y "$dir/segments/first-frame-$pdt.png" || true
    done
    stop_all
done
python3 scripts/bench_latency_report.py "$out"
