#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of the project for a fixed time each.
#
#   scripts/fuzz.sh                    # 60 s per target
#   FUZZ_SECONDS=30 scripts/fuzz.sh    # 30 s per target
#   FUZZ_SANITIZER=none scripts/fuzz.sh
#
# Targets: fmp4_reader (transcoder/fuzz), request_parse and playlist_writer (origin/fuzz).
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

# The playlist writer's input is a script of log operations: it starts from an empty corpus.
seed_playlist_writer() {
    :
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
