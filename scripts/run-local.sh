#!/usr/bin/env bash
# Starts the local stack on this machine (the origin with the built-in test source, using
# conf/local.yaml, an edge in front of it serving the watch page, and the chat relay), prints
# the URLs, and stops all of it on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/origin
edge=target/release/edge
config=conf/local.yaml
edge_args=(--config conf/edge-local.yaml)
chat=target/release/chat-relay
chat_args=(--config conf/chat-relay-local.yaml)
# A self-signed development certificate for the edge's TLS listener (HTTP/2 and HTTP/1.1).
tls=target/dev-tls
if [ ! -s "$tls/edge.crt" ] || [ ! -s "$tls/edge.key" ]; then
    mkdir -p "$tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
        -subj "/CN=corral local edge" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$tls/edge.key" -out "$tls/edge.crt" 2>/dev/null
fi
"$bin" --config "$config" --check >/dev/null
"$edge" "${edge_args[@]}" --check >/dev/null
"$chat" "${chat_args[@]}" --check >/dev/null

cat <<MSG

  Corral local stack (Ctrl-C stops it)

  watch page       http://127.0.0.1:8080/                         (live streams; the demo: http://127.0.0.1:8080/watch/demo)
                   https://127.0.0.1:8443/watch/demo             (HTTP/2; accept the self-signed certificate once)
  LL-HLS stream    http://127.0.0.1:8080/live/demo/master.m3u8   (through the edge; built-in test source)
  media playlist   http://127.0.0.1:8080/live/demo/720p/index.m3u8
  over TLS         https://127.0.0.1:8443/live/demo/master.m3u8  (HTTP/2, HTTP/1.1 and HTTP/3; self-signed: curl --cacert target/dev-tls/edge.crt)
  the origin       http://127.0.0.1:8081/live/demo/master.m3u8   (what the edge caches)
  your broadcast   http://127.0.0.1:8080/live/studio/master.m3u8 once you publish:
    OBS            server rtmp://127.0.0.1:1935/live, stream key studio-key
    ffmpeg/RTMP    ffmpeg -re -i input.mp4 -c copy -f flv rtmp://127.0.0.1:1935/live/studio-key
    ffmpeg/SRT     ffmpeg -re -i input.mp4 -c copy -f mpegts 'srt://127.0.0.1:9000?streamid=studio-key'
  catalog          http://127.0.0.1:8080/api/streams   (titles, thumbnails, viewers, past broadcasts)
  notifications    curl -N http://127.0.0.1:8080/api/events   (PENDING, LIVE, ENDED, ARCHIVED)
  DVR              http://127.0.0.1:8080/live/demo/dvr.m3u8   (10 minutes back; ?start=-120; page: /watch/demo?dvr=1)
  replays          http://127.0.0.1:8080/vod/studio/<session>/master.m3u8   (archived in .run/archive; listed at /)
  admin API        Authorization: Bearer dev-admin-token at http://127.0.0.1:8081/api/streams
                   (metadata: POST, PATCH, DELETE; cues: POST /api/streams/demo/cues
                   {"kind":"ad","duration":10,"asset":"/vod/..."} or {"kind":"flash","duration":10,"text":"..."})
  health           http://127.0.0.1:8081/healthz
  chat room        ws://127.0.0.1:8090/v1/rooms/demo/ws?token=<JWT>   (read-only without a token)
    tokens         HS256, claims sub, name, exp, signed with the local secret dev-chat-secret
    history        http://127.0.0.1:8090/v1/rooms/demo/messages
    channel        http://127.0.0.1:8090/v1/channels/demo
    moderation     Authorization: Bearer dev-admin-token (bans, deletes, announcements, modes)
  metrics          http://127.0.0.1:9101/metrics (origin), http://127.0.0.1:9102/metrics (edge),
                   http://127.0.0.1:9103/metrics (chat relay)

  Try: ffplay http://127.0.0.1:8080/live/demo/master.m3u8
       target/release/loadtest viewers -n 50 --duration 20s   (50 simulated LL-HLS players)

MSG
"$bin" --config "$config" &
origin_pid=$!
"$edge" "${edge_args[@]}" &
edge_pid=$!
"$chat" "${chat_args[@]}" &
chat_pid=$!
# Background jobs of a script ignore SIGINT from the terminal, so they are signalled here: the
# origin with SIGTERM (graceful), the edge with SIGINT (at once: on SIGTERM it would serve its
# held requests for shutdown_grace first, which a local stack does not need).
trap 'kill -TERM "$origin_pid" "$chat_pid" 2>/dev/null; kill -INT "$edge_pid" 2>/dev/null; wait' INT TERM EXIT
# Any one stopping stops the stack.
wait -n "$origin_pid" "$edge_pid" "$chat_pid"
