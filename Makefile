# Corral: the two commands a user needs are `make run` and `make test`.

CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: run test deps build release check lint unit e2e bench fuzz clean

## run: start the local stack (origin + built-in test source) and print its URLs
run: deps release
	scripts/run-local.sh

## test: install what is missing, then check formatting and lints and run every test
test: deps lint build
	$(CARGO) test --workspace --no-fail-fast

## deps: install ffmpeg, fonts, cmake and friends with apt-get when missing
deps:
	scripts/install-deps.sh

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --bins -p corral-origin -p corral-loadtest

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: measure the transcoder and the origin (numbers go to BENCHMARKS.md)
bench: deps release
	scripts/bench-origin.sh

## fuzz: run every fuzz target for FUZZ_SECONDS seconds
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

clean:
	$(CARGO) clean
