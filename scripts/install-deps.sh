#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build, run and test Corral, with apt-get
# (directly as root, through sudo otherwise). Does nothing when everything is present. With
# --test, also what the tests need (python3-venv, chromium, an emoji font, redis-server); with
# --bench, that and tesseract (the latency benchmark reads the clock burnt into the picture).
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# npm installs the watch page's hls.js (make web).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${1:-}" = "--bench" ]; then
    command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr)
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
    # What the tests' clients need: aioquic in a venv, playwright-core driving chromium.
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    # Emoji (reactions, emotes) in the browser tests' screenshots.
    [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
    # The multi-node chat test runs two relays on one real Redis server.
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    # The cache comparison (loadtest/compare) runs nginx and Varnish from Debian's packages.
    [ -x /usr/sbin/nginx ] || need+=(nginx)
    [ -x /usr/sbin/varnishd ] || need+=(varnish)
fi
[ -d /etc/ssl/certs ] || need+=(ca-certificates)
[ -f /usr/include/srt/srt.h ] || need+=(libsrt-gnutls-dev)
command -v srt-live-transmit >/dev/null 2>&1 || need+=(srt-tools)

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo is missing: install Rust with rustup (https://rustup.rs) and run this again" >&2
    exit 1
fi

if [ ${#need[@]} -eq 0 ]; then
    echo "deps: everything needed is installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "deps: missing ${need[*]}; run as root or install sudo" >&2
    exit 1
fi

echo "deps: installing ${need[*]} with apt-get"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
