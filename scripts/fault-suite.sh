#!/usr/bin/env bash
# The fault-injection suite (tests/faults.rs) with release builds and FAULT_VIEWERS players
# (200 by default; CI runs the same tests with 20 and debug builds): a broadcaster publishing
# to a primary origin and a standby that follows it, an edge in front of both, the viewer swarm
# and a probe player watching through the edge while each fault is injected in turn. Prints the
# table of stalls, recovery and failed requests (the README's reliability section holds one).
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${FAULT_VIEWERS:-200}
cargo build --release --bins -p corral-origin -p corral-edge -p corral-loadtest
cargo test --no-run -p corral-e2e --test faults
rm -f target/faults/report.jsonl
FAULT_VIEWERS=$VIEWERS CORRAL_BIN_DIR="$PWD/target/release" \
    cargo test -p corral-e2e --test faults -- --test-threads=1
python3 - target/faults/report.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| fault | viewers | players stalled | stall time, all players | recovery (longest wait for a part, less one part) | requests failed (retried) |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['fault']} | {r['viewers']} | {r['players_stalled']} ({r['stalls']} stalls) "
          f"| {r['stall_seconds']:.2f} s | {r['recovery_seconds']:.2f} s "
          f"| {r['failed_requests']} of {r['requests']:,} |")
PY
