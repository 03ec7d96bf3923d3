#!/usr/bin/env bash
# How many LL-HLS viewers one edge carries on this machine without a stall: an origin with the
# test pattern on the local stack's ladder (720p, 480p, 360p, audio), one edge with its defaults
# in front, then `loadtest viewers` at each count in COUNTS (ramp-up RAMP, then SECONDS of
# watching; one worker process per 2,500 players; source addresses 127.0.0.1-4). Stops after the
# first count with a stall or a failed request. For each run it records the swarm's report and
# what each party used: CPU (in cores, averaged over the run) of the edge, the origin with its
# ffmpeg, and the load generator with its workers; the most files the edge had open at once
# (sampled every second) and its resident memory at the end of the run;
# the origin's publish lag (media time to the part's publication, its own histogram), which
# tells a starved transcoder from a slow edge. In production the origin has a machine of its
# own: here it runs at a higher priority (ORIGIN_NICE, -5 as root) so that the edge and the
# players, not the encoder, are what the machine's two cores run out for.
# Prints a Markdown table for BENCHMARKS.md; the JSON reports go to BENCH_KEEP when set.
# EDGE_EXTRA adds YAML to the edge's config (say `cache: {playlist_gzip_bytes: 0}`), to measure
# a setting's cost.
# Run after `make release`.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${BENCH_VIEWERS_COUNTS:-500 1000 1500 2000 3000 4000}
SECONDS_EACH=${BENCH_SECONDS:-60}
RAMP=${BENCH_RAMP:-20}
SOURCES=${BENCH_SOURCES:-127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4}
BIN=${BIN:-target/release}
ORIGIN_NICE=${ORIGIN_NICE:-$([[ $(id -u) -eq 0 ]] && echo -5 || echo 0)}
for b in origin edge loadtest; do
    [[ -x $BIN/$b ]] || { echo "bench: $BIN/$b is missing: run make release" >&2; exit 1; }
done

out=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -z ${BENCH_KEEP:-} ]] || { mkdir -p "$BENCH_KEEP" && cp "$out"/*.json* "$out"/*.log "$BENCH_KEEP"/ 2>/dev/null || true; }
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four free ports, held together while the kernel picks them so that they differ.
read -r origin_port origin_metrics edge_port edge_metrics <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')"
cat >"$out/origin.yaml" <<YAML
# The archive (every broadcast, for DVR and VOD) stays in this run's scratch directory.
archive: { path: $out/archive }
log_level: warn
http: { listen: 127.0.0.1:$origin_port }
metrics: { listen: 127.0.0.1:$origin_metrics }
transcoder:
  ladder:
    - { name: 720p, width: 1280, height: 720, bitrate: 2800k }
    - { name: 480p, width: 854, height: 480, bitrate: 1400k }
    - { name: 360p, width: 640, height: 360, bitrate: 800k }
streams:
  - name: demo
    source: testsrc
YAML
cat >"$out/edge.yaml" <<YAML
log_level: warn
metrics_listen: 127.0.0.1:$edge_metrics
${EDGE_EXTRA:-}
YAML
nice -n "$ORIGIN_NICE" "$BIN/origin" --config "$out/origin.yaml" >"$out/origin.log" 2>&1 &
origin_pid=$!
pids+=($origin_pid)
"$BIN/edge" --config "$out/edge.yaml" --listen "127.0.0.1:$edge_port" --origin "127.0.0.1:$origin_port" \
    >"$out/edge.log" 2>&1 &
edge_pid=$!
pids+=($edge_pid)
master=http://127.0.0.1:$edge_port/live/demo/master.m3u8
deadline=$((SECONDS + 60))
until curl -sf "http://127.0.0.1:$edge_port/live/demo/720p/index.m3u8" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "bench: no live playlist after 60 s" >&2; tail "$out"/*.log >&2; exit 1; }
    sleep 0.2
done

# CPU seconds (user + system) of a process and all of its descendants still running.
tree_cpu() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
children = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append((int(p), fields))
def cpu(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    f = stat[stat.rfind(")") + 2:].split()
    own = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu(c) for c, _ in children.get(pid, []))
print(f"{cpu(root):.2f}")
PY
}

# The origin's publish lag so far: "sum count" of its histogram over every rendition.
publish_lag() {
    curl -sf "http://127.0.0.1:$origin_metrics/metrics" | awk '
        /^corral_origin_publish_lag_seconds_sum/ {s += $NF}
        /^corral_origin_publish_lag_seconds_count/ {c += $NF}
        END {print s + 0, c + 0}'
}

echo "bench: $(nproc) cores, ${SECONDS_EACH}s per run after a ${RAMP}s ramp, sources $SOURCES," \
    "origin at nice $ORIGIN_NICE" >&2
for n in $COUNTS; do
    echo "bench: $n viewers" >&2
    edge_before=$(tree_cpu "$edge_pid")
    origin_before=$(tree_cpu "$origin_pid")
    read -r lag_sum0 lag_count0 <<<"$(publish_lag)"
    started=$(date +%s.%N)
    # The edge's open files, sampled while the players watch; the largest count wins.
    (
        most=0
        while kill -0 "$edge_pid" 2>/dev/null; do
            n_fds=$(find "/proc/$edge_pid/fd" -mindepth 1 2>/dev/null | wc -l)
            ((n_fds > most)) && most=$n_fds && echo "$most" >"$out/fds-$n.txt"
            sleep 1
        done
    ) &
    sampler=$!
    # The generator's CPU: its own and its workers', as the kernel counts them for the parent.
    python3 - "$out/run-$n.json" "$out/gen-$n.txt" "$BIN/loadtest" viewers "$master" -n "$n" \
        --ramp-up "${RAMP}s" --duration "${SECONDS_EACH}s" --source-addrs "$SOURCES" \
        --origin-metrics "http://127.0.0.1:$origin_metrics/metrics" \
        --edge-metrics "http://127.0.0.1:$edge_metrics/metrics" --format json <<'PY' || true
import resource, subprocess, sys
report, gen, *cmd = sys.argv[1:]
with open(report, "wb") as f:
    rc = subprocess.call(cmd, stdout=f)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(gen, "w").write(f"{u.ru_utime + u.ru_stime:.2f} {rc}\n")
PY
    wall=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    edge_fds=$(cat "$out/fds-$n.txt" 2>/dev/null || echo 0)
    edge_rss=$(awk '/VmRSS/ {print $2}' "/proc/$edge_pid/status")
    read -r gen_cpu rc <"$out/gen-$n.txt"
    read -r lag_sum1 lag_count1 <<<"$(publish_lag)"
    publish_lag_ms=$(python3 -c "print(round(1000 * ($lag_sum1 - $lag_sum0) / max($lag_count1 - $lag_count0, 1), 1))")
    python3 - "$out/run-$n.json" "$n" "$wall" "$(tree_cpu "$edge_pid")" "$edge_before" \
        "$(tree_cpu "$origin_pid")" "$origin_before" "$gen_cpu" "$edge_fds" "$edge_rss" "$rc" "$publish_lag_ms" \
        >>"$out/runs.jsonl" <<'PY'
import json, sys
path, n, wall, e1, e0, o1, o0, gen, fds, rss, rc, lag = sys.argv[1:]
try:
    r = json.load(open(path))
except (OSError, ValueError):
    r = {"error": f"loadtest exited {rc} without a report"}
wall = float(wall)
r["bench"] = {
    "viewers": int(n),
    "edge_cores": (float(e1) - float(e0)) / wall,
    "origin_cores": (float(o1) - float(o0)) / wall,
    "loadtest_cores": float(gen) / wall,
    "edge_open_files": int(fds),
    "edge_rss_kb": int(rss),
    "origin_publish_lag_ms": float(lag),
}
print(json.dumps(r))
PY
    tail -n1 "$out/runs.jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin)
b = r["bench"]
print("bench: {} viewers: {} playing, {} stalls, {} errors; cores: edge {:.2f}, origin {:.2f}, loadtest {:.2f};"
      " origin publish lag {} ms".format(
    b["viewers"], r.get("players_playing", 0), r.get("stalls", "?"), r.get("error_count", "?"),
    b["edge_cores"], b["origin_cores"], b["loadtest_cores"], b["origin_publish_lag_ms"]), file=sys.stderr)'
    if ! tail -n1 "$out/runs.jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin)
sys.exit(0 if r.get("stalls") == 0 and r.get("error_count") == 0 and r.get("players_playing") == r["bench"]["viewers"] else 1)'; then
        echo "bench: stalls or errors at $n viewers: stopping here" >&2
        break
    fi
done
cp "$out/runs.jsonl" "$out/runs.json"

python3 - "$out/runs.jsonl" <<'PY'
import json, sys
print("| viewers | playing | stalls | errors | requests/s | MB/s | part p50 / p99 | blocking reload p99 | part lag p50 / p99 | origin publish lag, mean | origin / viewer requests | edge | origin + ffmpeg | loadtest | edge open files, most | edge RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
def q(r, kind, p):
    k = r.get("by_kind", {}).get(kind)
    return "-" if not k else f"{k['latency_us'][p] / 1000:.1f} ms"
for line in open(sys.argv[1]):
    r = json.loads(line); b = r["bench"]
    amp = (r.get("amplification") or {}).get("origin_per_viewer_request")
    lag = r.get("part_lag_us") or {}
    print(f"| {b['viewers']:,} | {r.get('players_playing', 0):,} | {r.get('stalls', '-')} | {r.get('error_count', '-')} "
          f"| {r.get('requests_per_s', 0):,.0f} | {r.get('bytes_per_s', 0) / 1e6:.1f} "
          f"| {q(r, 'part', 'p50')} / {q(r, 'part', 'p99')} | {q(r, 'blocking_playlist', 'p99')} "
          f"| {lag.get('p50', 0) / 1000:.0f} / {lag.get('p99', 0) / 1000:.0f} ms | {b['origin_publish_lag_ms']:.0f} ms "
          f"| {'-' if amp is None else f'{amp:.5f}'} | {b['edge_cores']:.2f} | {b['origin_cores']:.2f} "
          f"| {b['loadtest_cores']:.2f} | {b['edge_open_files']:,} | {b['edge_rss_kb'] / 1024:.0f} MB |")
PY
