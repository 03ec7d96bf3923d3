# Corral: the two commands a user needs are `make run` and `make test`.

CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: run test deps test-deps web build release lint bench bench-watch bench-latency bench-compare bench-viewers fault-suite fuzz fuzz-smoke clean

## run: start the local stack (origin with the built-in test source, an edge in front, the chat
## relay) and print its URLs
run: deps web release
	scripts/run-local.sh

## test: install what is missing, check formatting and lints, run every test, then a short
## run of every fuzz target (so the targets keep building and shallow crashes are caught)
test: test-deps web lint build
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) fuzz-smoke

## deps: install ffmpeg, fonts, cmake, node/npm and friends with apt-get when missing
deps:
	scripts/install-deps.sh

## test-deps: deps, plus chromium, nodejs and python3-venv, and the pinned test clients
## (aioquic from PyPI in target/pyenv, playwright-core from npm in tests/browser)
test-deps:
	scripts/install-deps.sh --test
	scripts/install-test-clients.sh

## web: the watch page's one dependency, hls.js from the npm registry (pinned by
## web/package-lock.json), into web/node_modules where the edge serves it from
web:
	@if [ ! -f web/node_modules/hls.js/dist/hls.min.js ]; then \
		echo "web: installing hls.js in web/"; \
		cd web && npm ci --silent --no-audit --no-fund; \
	fi

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --bins -p corral-origin -p corral-edge -p corral-chat-relay -p corral-loadtest

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: measure the transcoder, the origin and ingest (numbers go to BENCHMARKS.md)
bench: deps release
	scripts/bench-origin.sh
	scripts/bench-ingest.sh

## bench-watch: the watch page in chromium through the edge for 60 s: startup, stalls and
## glass-to-glass latency (numbers go to BENCHMARKS.md)
bench-watch: test-deps web release
	scripts/bench-watch.sh

## bench-latency: stock players (hls.js, Shaka Player) in chromium through the edge over
## HTTP/1.1, HTTP/2 and HTTP/3, fed by the test source and by an RTMP publish: stalls, startup,
## the rung played, glass-to-glass by the burnt-in clock and by program date-time, the budget's
## stages (10-minute runs; BENCH_SECONDS shortens them)
bench-latency: web release
	scripts/install-deps.sh --bench
	scripts/install-test-clients.sh
	scripts/bench-latency.sh

## bench-compare: the edge against nginx (proxy_cache_lock) and Varnish in front of one origin:
## herds and cache hits, interleaved; writes its table into BENCHMARKS.md
bench-compare: deps release
	loadtest/compare/compare.sh

## bench-viewers: the largest LL-HLS viewer swarm one edge carries here without a stall (prints
## a table for BENCHMARKS.md)
bench-viewers: deps release
	scripts/bench-viewers.sh

## fault-suite: every fault injected while 200 players watch (origin killed or hung, ffmpeg
## killed, publisher gone, edge restarted); prints the table of stalls and recovery times
fault-suite: deps
	scripts/fault-suite.sh

## fuzz: run every fuzz target for FUZZ_SECONDS seconds (with AddressSanitizer)
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

fuzz-smoke:
	FUZZ_SECONDS=20 FUZZ_SANITIZER=none scripts/fuzz.sh

clean:
	$(CARGO) clean
