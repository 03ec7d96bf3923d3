#!/usr/bin/env bash
# Chat fan-out: one room with CONNECTIONS read-only receivers (each count in COUNTS, a fresh
# relay for each) and SENDERS senders sending RATE messages/s in all for SECONDS; prints each
# run's JSON (loadtest chat), then a markdown table for BENCHMARKS.md: receivers held,
# deliveries/s, delivery latency (send to receive, one clock), losses, the relay's resident
# memory per connection and its CPU while sending, and the clients' CPU: they run on the same
# machine as the relay, spread over worker processes (the open-file limit is per process) and
# over several loopback source addresses (ephemeral ports are per source address). "lost"
# counts deliveries of acked messages not received within loadtest's settle time (3 s) after
# the last send: late ones count as lost.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${BENCH_CHAT_COUNTS:-1000 5000 10000 20000}
SECONDS_EACH=${BENCH_SECONDS:-30}
RATE=${BENCH_CHAT_RATE:-10}
SENDERS=${BENCH_CHAT_SENDERS:-10}
SOURCES=${BENCH_CHAT_SOURCES:-127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4}
CONNECT_RATE=${BENCH_CHAT_CONNECT_RATE:-1000}
relay=target/release/chat-relay
loadtest=target/release/loadtest
out=$(mktemp -d)
# Never `kill 0`: with no relay running, that would signal this whole process group.
trap '[ -z "${relay_pid:-}" ] || kill "$relay_pid" 2>/dev/null || true; wait; rm -rf "$out"' EXIT

timeout 1800 cargo build --release -p corral-chat-relay -p corral-loadtest

# Two free ports, held together while the kernel picks them so that they differ.
free_ports() {
    python3 -c 'import socket; s = [socket.socket() for _ in "ab"]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])'
}

# Stops the relay by its PID: SIGTERM, then SIGKILL after 10 s.
stop_relay() {
    kill "$relay_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$relay_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
}

echo "machine: $(nproc) cores, open files $(ulimit -n) per process, somaxconn $(cat /proc/sys/net/core/somaxconn);" \
    "$SENDERS senders, $RATE messages/s, ${SECONDS_EACH} s per run" >&2

for n in $COUNTS; do
    read -r port metrics_port <<<"$(free_ports)"
    cat >"$out/relay.yaml" <<YAML
log_level: warn
listen: 127.0.0.1:$port
metrics_listen: 127.0.0.1:$metrics_port
database: $out/chat-$n.sqlite
jwt_secret: dev-chat-secret
# The benchmark measures fan-out, not the per-user limit.
rate_burst: 10000
rate_period: 1.0
send_queue: 1024
fanout_shards: 16
viewers_interval: 30.0
YAML
    "$relay" --config "$out/relay.yaml" 2>"$out/relay-$n.log" &
    relay_pid=$!
    up=""
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && up=1 && break
        sleep 0.1
    done
    [ -n "$up" ] || { echo "bench: the relay did not start (see below)" >&2; cat "$out/relay-$n.log" >&2; exit 1; }

    # The ramp (n / CONNECT_RATE s), the run, the settle time and a minute to spare.
    limit=$((n / CONNECT_RATE + SECONDS_EACH + 60))
    if timeout "$limit" "$loadtest" chat "ws://127.0.0.1:$port/v1/rooms/bench/ws" --format json \
        --connections "$n" --senders "$SENDERS" --rate "$RATE" --duration "$SECONDS_EACH" \
        --source-addrs "$SOURCES" --connect-rate "$CONNECT_RATE" --server-pid "$relay_pid" \
        >"$out/run-$n.json"; then
        python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))" "$out/run-$n.json" \
            | tee -a "$out/runs.jsonl" >&2
    else
        echo "bench: $n receivers: loadtest failed or ran past ${limit} s" >&2
    fi
    stop_relay
    if grep -qiE "error|too many open files" "$out/relay-$n.log"; then
        echo "bench: relay log for $n receivers:" >&2
        # Without timestamps and numbers, so that alike lines count together.
        grep -iE "error|too many open files" "$out/relay-$n.log" | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' \
            | sort | uniq -c | sort -rn | head -5 >&2
    fi
done

[ -s "$out/runs.jsonl" ] || { echo "bench: no run finished" >&2; exit 1; }
python3 - "$out/runs.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| receivers | held | connect failures | deliveries/s | p50 | p99 | max | lost | relay RSS per connection | relay CPU | loadtest CPU |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
pct = lambda v: "-" if v is None else f"{v:.0f} %"
for r in runs:
    lat = r["latency_us"]
    rss = r.get("rss_bytes_per_connection")
    print(f"| {r['connections']:,} | {r['connections_held']:,} | {r['connect_failures']:,} "
          f"| {r['deliveries_per_s']:,.0f} | {lat['p50'] / 1000:.1f} ms | {lat['p99'] / 1000:.1f} ms "
          f"| {lat['max'] / 1000:.1f} ms | {r['lost']:,} "
          f"| {'-' if rss is None else f'{rss / 1024:.1f} KiB'} | {pct(r.get('server_cpu_percent'))} "
          f"| {pct(r.get('loadtest_cpu_percent'))} |")
PY
