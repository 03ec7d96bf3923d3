#!/usr/bin/env bash
# Starts the local stack on this machine (the origin with the built-in test source, using
# conf/local.yaml), prints the URLs, and stops it on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/origin
config=conf/local.yaml
"$bin" --config "$config" --check >/dev/null

cat <<MSG

  Corral local stack (Ctrl-C stops it)

  LL-HLS stream    http://127.0.0.1:8081/live/demo/master.m3u8
  media playlist   http://127.0.0.1:8081/live/demo/720p/index.m3u8
  streams API      http://127.0.0.1:8081/api/streams
  health           http://127.0.0.1:8081/healthz
  metrics          http://127.0.0.1:9101/metrics

  Try: ffplay http://127.0.0.1:8081/live/demo/master.m3u8
       target/release/loadtest --duration 20     (an LL-HLS viewer measuring latency)

MSG
exec "$bin" --config "$config"
