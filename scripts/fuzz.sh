#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of the project for a fixed time each.
#
#   scripts/fuzz.sh                    # 60 s per target
#   FUZZ_SECONDS=30 scripts/fuzz.sh    # 30 s per target
#   FUZZ_SANITIZER=none scripts/fuzz.sh
#
# Targets: fmp4_reader (transcoder/fuzz), request_parse, playlist_writer, srt_streamid,
# rtmp_session and mpegts_monitor (origin/fuzz), edge_request and signed_url (edge/fuzz),
# chat_frame (chat-relay/fuzz).
# Each runs on the gitignored corpus directory <crate>/fuzz/corpus/<target>, which keeps what
# earlier runs found and is seeded on every run (fmp4_reader from the ffmpeg fixtures in
# transcoder/tests/fixtures). Crashing inputs land in <crate>/fuzz/artifacts/<target>/; reproduce
# one with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir <crate>/fuzz <target> <file>`.
#
# Exits 1 if any target crashed (or hit a timeout or the memory limit), 2 if one did not build.
#
# Stable toolchain: cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address and the
# sanitizer-coverage passes); RUSTC_BOOTSTRAP=1 makes stable rustc accept them. AddressSanitizer
# is used when it builds; otherwise the script falls back to `--sanitizer none` (libFuzzer's
# coverage feedback and Rust's panic and overflow checks still apply).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# Seeds for fmp4_reader: the first input byte chooses how the stream is cut into reads (0: one
# read; n: pieces of 1..=n bytes), so each fixture is seeded behind several such bytes.
seed_fmp4_reader() {
    local dir="$1" fixture name selector
    for fixture in "$root"/transcoder/tests/fixtures/*.mp4; do
        name="$(basename "$fixture" .mp4)"
        for selector in 00 01 07 40 ff; do
            { printf "\\x${selector}"; cat "$fixture"; } >"$dir/seed-$name-$selector"
        done
    done
}

# Seeds for request_parse: one URL of each kind the origin serves.
seed_request_parse() {
    local dir="$1" i=0 url
    for url in \
        '/live/demo/master.m3u8' \
        '/live/demo/720p/index.m3u8?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES' \
        '/live/demo/720p/index.m3u8?token=abc&_HLS_msn=5&_HLS_skip=v2' \
        '/live/demo/720p/init.mp4' \
        '/live/demo/720p/init-900.mp4' \
        '/live/demo/audio/901.m4s' \
        '/live/demo/audio/901.4.m4s' \
        '/api/streams' \
        '/healthz'; do
        printf '%s' "$url" >"$dir/seed-$i"
        i=$((i + 1))
    done
}

# The edge reads the same URLs (and signatures beside the directives, in any order).
seed_edge_request() {
    seed_request_parse "$1"
    printf '%s' '/live/demo/720p/index.m3u8?_HLS_part=3&exp=1700000000&sig=abc&_HLS_msn=012' >"$1/seed-edge"
}

# Signatures checked at a signing edge: 8 bytes of "now", then a signed path and query.
seed_signed_url() {
    printf '\0\0\0\0\0\0\0\0/live/demo/master.m3u8?exp=1796212345&sig=5c1f00' >"$1/seed-0"
    printf '\0\0\0\0\0\0\0\0#EXTM3U\n#EXT-X-MAP:URI="init-5.mp4"\n5.m4s\n' >"$1/seed-1"
}

# Chat frames: one of each op, with emotes.
seed_chat_frame() {
    printf '%s' '{"op":"send","text":"hi :Kappa: :GG::GG:","nonce":"n1"}' >"$1/seed-0"
    printf '%s' '{"op":"react","emoji":"x"}' >"$1/seed-1"
    printf '%s' '{"op":"seen","offset":12}' >"$1/seed-2"
}

# The playlist writer's input is a script of log operations: it starts from an empty corpus.
seed_playlist_writer() {
    :
}

# Seeds for srt_streamid: the stream ids SRT callers send, plain and access-control forms.
seed_srt_streamid() {
    local dir="$1" i=0 id
    for id in \
        'studio-key' \
        '#!::r=studio,m=publish,s=studio-key' \
        '#!::s=studio-key,u=alice,h=example.com,t=stream' \
        '#!::r=studio-key' \
        '#!::m=request,s=studio-key' \
        '#!::x-custom=1,s=k=with=equals' \
        '#!:{r=studio}'; do
        printf '%s' "$id" >"$dir/seed-$i"
        i=$((i + 1))
    done
}

# Seeds for mpegts_monitor: half a second of H.264 and AAC in MPEG-TS, as SRT callers send,
# behind the read-splitting selector bytes.
seed_mpegts_monitor() {
    local dir="$1" ts selector
    ts="$(mktemp)"
    ffmpeg -hide_banner -loglevel error -y -t 0.5 -f lavfi -i testsrc2=size=64x64:rate=30 \
        -t 0.5 -f lavfi -i sine -c:v libx264 -preset ultrafast -g 5 -c:a aac -f mpegts "$ts"
    for selector in 00 01 bc ff; do
        { printf "\\x${selector}"; cat "$ts"; } >"$dir/seed-$selector"
    done
    rm -f "$ts"
}

# The helpers below write RTMP bytes for the rtmp_session seeds.

# rtmp_u24 N: a 24-bit big-endian number.
rtmp_u24() {
    printf "\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"
}

# amf_string S: an AMF0 string.
amf_string() {
    printf '\x02'
    amf_key "$1"
}

# amf_key S: a property name (a string without its marker).
amf_key() {
    printf "\\x$(printf %02x $((${#1} >> 8)))\\x$(printf %02x $((${#1} & 255)))%s" "$1"
}

# amf_number HEX: an AMF0 number given by the leading hex digits of its IEEE double (the rest
# are zero, which is enough for the small whole numbers used here: 3ff = 1, 4 = 2, 4008 = 3...).
amf_number() {
    local hex="$1" i
    while ((${#hex} < 16)); do hex="${hex}0"; done
    printf '\x00'
    for ((i = 0; i < 16; i += 2)); do printf "\\x${hex:i:2}"; done
}

# rtmp_message CSID TYPE STREAM_ID TIMESTAMP FILE: FILE's bytes as one format 0 chunk (the seeds
# raise the chunk size to 4096 first, and every message fits).
rtmp_message() {
    printf "\\x$(printf %02x "$1")"
    rtmp_u24 "$4"
    rtmp_u24 "$(wc -c <"$5")"
    printf "\\x$(printf %02x "$2")\\x$(printf %02x "$3")\\x00\\x00\\x00"
    cat "$5"
}

# rtmp_publish KEY: a client's handshake and OBS-style publish under KEY: connect,
# releaseStream, FCPublish, createStream, publish, @setDataFrame, sequence headers, frames, a
# ping, FCUnpublish and deleteStream.
rtmp_publish() {
    local key="$1" body
    body="$(mktemp)"
    # C0, C1 and C2: the server reads only the version byte.
    printf '\x03'
    head -c 3072 /dev/zero
    printf '\x00\x00\x10\x00' >"$body"
    rtmp_message 2 1 0 0 "$body"
    { amf_string connect; amf_number 3ff; printf '\x03'
      amf_key app; amf_string live; amf_key type; amf_string nonprivate
      amf_key tcUrl; amf_string rtmp://127.0.0.1:1935/live; printf '\x00\x00\x09'; } >"$body"
    rtmp_message 3 20 0 0 "$body"
    { amf_string releaseStream; amf_number 4; printf '\x05'; amf_string "$key"; } >"$body"
    rtmp_message 3 20 0 0 "$body"
    { amf_string FCPublish; amf_number 4008; printf '\x05'; amf_string "$key"; } >"$body"
    rtmp_message 3 20 0 0 "$body"
    { amf_string createStream; amf_number 401; printf '\x05'; } >"$body"
    rtmp_message 3 20 0 0 "$body"
    { amf_string publish; amf_number 4014; printf '\x05'; amf_string "$key?token=1"
      amf_string live; } >"$body"
    rtmp_message 8 20 1 0 "$body"
    { amf_string @setDataFrame; amf_string onMetaData; printf '\x08\x00\x00\x00\x02'
      amf_key width; amf_number 4074; amf_key height; amf_number 40668
      printf '\x00\x00\x09'; } >"$body"
    rtmp_message 4 18 1 0 "$body"
    printf '\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x04\x67\x64\x00\x1f\x01\x00\x02\x68\xee' >"$body"
    rtmp_message 6 9 1 0 "$body"
    printf '\xaf\x00\x12\x10' >"$body"
    rtmp_message 4 8 1 0 "$body"
    printf '\x17\x01\x00\x00\x00\x00\x00\x00\x05\x65\x88\x84\x00\x10' >"$body"
    rtmp_message 6 9 1 0 "$body"
    printf '\xaf\x01\x21\x10\x04\x60' >"$body"
    rtmp_message 4 8 1 23 "$body"
    printf '\x27\x01\x00\x00\x00\x00\x00\x00\x03\x41\x9a\x02' >"$body"
    rtmp_message 6 9 1 33 "$body"
    printf '\x00\x06\x00\x00\x00\x2a' >"$body"
    rtmp_message 2 4 0 0 "$body"
    { amf_string FCUnpublish; amf_number 4018; printf '\x05'; amf_string "$key"; } >"$body"
    rtmp_message 3 20 0 0 "$body"
    { amf_string deleteStream; amf_number 401c; printf '\x05'; amf_number 3ff; } >"$body"
    rtmp_message 3 20 0 0 "$body"
    rm -f "$body"
}

# Seeds for rtmp_session: the first byte chooses how the rest is cut into reads (as for
# fmp4_reader), then a whole publish; one is accepted, one refused (the target refuses the key
# "reject").
seed_rtmp_session() {
    local dir="$1" key selector session
    session="$(mktemp)"
    for key in studio-key reject; do
        rtmp_publish "$key" >"$session"
        for selector in 00 01 07 40 ff; do
            { printf "\\x${selector}"; cat "$session"; } >"$dir/seed-$key-$selector"
        done
    done
    rm -f "$session"
}

failed=()
broken=()

# run_target CRATE_DIR TARGET [LIBFUZZER_ARGS...]
run_target() {
    local fuzz_dir="$root/$1/fuzz" target="$2"
    shift 2
    local corpus="$fuzz_dir/corpus/$target" san="$sanitizer"
    mkdir -p "$corpus"
    "seed_$target" "$corpus"

    echo "==> building $target (sanitizer: $san)"
    if ! cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$san" "$target"; then
        if [[ "$san" == none ]]; then
            broken+=("$target")
            return
        fi
        echo "==> $target did not build with sanitizer $san; retrying with --sanitizer none"
        san=none
        if ! cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer none "$target"; then
            broken+=("$target")
            return
        fi
    fi

    echo "==> fuzzing $target for ${seconds}s"
    if ! cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$san" "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$@"; then
        echo "==> $target FAILED: see $fuzz_dir/artifacts/$target/"
        failed+=("$target")
    fi
}

run_target transcoder fmp4_reader
run_target origin request_parse -max_len=8192
run_target origin playlist_writer
run_target origin srt_streamid -max_len=1024
run_target origin rtmp_session -max_len=16384
run_target origin mpegts_monitor -max_len=65536
run_target edge edge_request -max_len=4096
run_target edge signed_url -max_len=4096
run_target chat-relay chat_frame -max_len=4096

echo
if ((${#broken[@]} > 0)); then
    echo "did not build: ${broken[*]}"
fi
if ((${#failed[@]} > 0)); then
    echo "crashed: ${failed[*]}"
fi
if ((${#broken[@]} > 0)); then
    exit 2
fi
if ((${#failed[@]} > 0)); then
    exit 1
fi
echo "all fuzz targets ran for ${seconds}s each without a crash"
