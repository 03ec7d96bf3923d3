#!/usr/bin/env bash
# The fault-injection suite (tests/faults.rs) with release builds, FAULT_VIEWERS players (200
# by default) and FAULT_CHATTERS chat receivers (200 by default; CI runs the same tests with
# 20 and 40 and debug builds): a broadcaster publishing to a primary origin and a standby that
# follows it, an edge in front of both (behind a shield in the region outage), two chat nodes
# on one Redis; the viewer swarm, a probe player and a headless browser watch through the edge
# and chatters talk over both nodes while each fault is injected in turn. Prints the table of
# stalls, recovery, failed requests, what the browser saw and the chat messages lost (the
# README's reliability section holds one).
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${FAULT_VIEWERS:-200}
CHATTERS=${FAULT_CHATTERS:-200}
cargo build --release --bins -p corral-origin -p corral-edge -p corral-loadtest -p corral-chat-relay
cargo test --no-run -p corral-e2e --test faults
rm -f target/faults/report.jsonl
FAULT_VIEWERS=$VIEWERS FAULT_CHATTERS=$CHATTERS CORRAL_BIN_DIR="$PWD/target/release" \
    cargo test -p corral-e2e --test faults -- --test-threads=1
python3 - target/faults/report.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| fault | viewers | players stalled | stall time, all players | recovery (longest wait for a part, less one part) | requests failed (retried) | browser: stalls, stall time, longest still | chat: lost of acked × receivers (reconnects, longest away) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    back = r.get('origin_back_seconds')
    fault = r['fault'] + (f"; live again {back:.1f} s after its restart" if back is not None else "")
    print(f"| {fault} | {r['viewers']} | {r['players_stalled']} ({r['stalls']} stalls) "
          f"| {r['stall_seconds']:.2f} s | {r['recovery_seconds']:.2f} s "
          f"| {r['failed_requests']} of {r['requests']:,} "
          f"| {r['browser_stalls']}, {r['browser_stall_ms'] / 1000:.1f} s, {r['browser_still_ms'] / 1000:.1f} s "
          f"| {r['chat_lost']} of {r['chat_acked']} × {r['chatters']} ({r['chat_reconnects']}, {r['chat_away_ms']} ms) |")
PY
