# Sourced by the benchmarks that run the local stack on free loopback ports (bench-watch.sh,
# bench-latency.sh): the pieces of its configuration they share.

# N free TCP ports on 127.0.0.1, on one line.
free_ports() { # N
    python3 -c 'import socket,sys; s=[socket.socket() for _ in range(int(sys.argv[1]))]; [x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])' "$1"
}

# A self-signed certificate for the edge's TLS listener at 127.0.0.1: DIR/edge.crt, DIR/edge.key.
bench_cert() { # DIR
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=bench edge" -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$1/edge.key" -out "$1/edge.crt" 2>/dev/null
}

# The origin config's listeners and archive, and the ladder of make run from conf/local.yaml;
# the caller adds its streams (and any other section).
origin_yaml_head() { # HTTP_PORT METRICS_PORT RTMP_PORT SRT_PORT ARCHIVE_DIR
    echo "http: { listen: 127.0.0.1:$1 }"
    echo "metrics: { listen: 127.0.0.1:$2 }"
    echo "ingest: { rtmp: { listen: 127.0.0.1:$3 }, srt: { listen: 127.0.0.1:$4 } }"
    echo "archive: { path: $5 }"
    sed -n '/^transcoder:/,/^[a-z]/p' conf/local.yaml | sed '$d'
}
