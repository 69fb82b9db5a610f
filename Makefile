# Switchboard's commands. `make run` and `make test` set up whatever is
# missing first, so both work on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
RUST_SOURCES := $(shell find ratelimit-rs/src -name '*.rs') ratelimit-rs/Cargo.toml ratelimit-rs/Cargo.lock
STUBS := server/switchboard/api/pb/gateway_pb2.py
BUF := tools/node_modules/.bin/buf
CONFIG ?= configs/default.yaml
LISTEN ?= 127.0.0.1:50051

.PHONY: help setup run test test-rust test-python lint proto bench bench-latency bench-limiter bench-routing bench-telemetry bench-compare bench-http lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMPS)/native $(STUBS) ## create .venv, install pinned dependencies, build the Rust extension and the stubs

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/deps: requirements.lock | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --no-deps -r requirements.lock
	@mkdir -p $(STAMPS) && touch $@

# maturin (the build backend) compiles ratelimit-rs into server/switchboard and
# installs the package in editable mode; dependencies come from the lock only.
$(STAMPS)/native: $(STAMPS)/deps $(RUST_SOURCES) pyproject.toml
	PATH=$(abspath $(VENV))/bin:$$PATH $(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# Generated stubs are never committed, and are rebuilt whenever the proto changes.
$(STUBS): proto/switchboard/v1/gateway.proto tools/genproto.py $(STAMPS)/deps
	$(PY) tools/genproto.py

proto: ## regenerate the gRPC stubs from proto/
	$(PY) tools/genproto.py

$(BUF): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: setup ## serve configs/default.yaml on 127.0.0.1:50051 (built-in simulator, no keys)
	$(VENV)/bin/switchboard serve --config $(CONFIG) --listen $(LISTEN)

test: setup test-rust test-python ## run every test: cargo test, then pytest

test-rust:
	cd ratelimit-rs && cargo test --quiet

test-python: setup
	$(PY) -m pytest

lint: setup $(BUF) ## ruff, mypy --strict, cargo clippy and fmt, buf lint
	$(VENV)/bin/ruff check server tests bench tools
	$(VENV)/bin/ruff format --check server tests bench tools
	$(VENV)/bin/mypy
	cd ratelimit-rs && cargo fmt --check && cargo clippy --all-targets --quiet -- -D warnings
	$(BUF) lint

bench: bench-latency bench-limiter bench-routing bench-telemetry bench-http bench-compare ## every benchmark

bench-latency: setup ## p50/p95/p99 of Complete direct, through litellm and through the fast path
	$(PY) bench/complete_latency.py --calls 1000

bench-limiter: setup ## ns per try_acquire+commit from Python, beside a pure-Python twin
	$(PY) bench/limiter.py
	cd ratelimit-rs && cargo bench --quiet

bench-routing: setup ## mean/p95 latency, errors and regret per routing strategy against the oracle
	$(PY) bench/routing.py

bench-telemetry: setup ## Complete throughput with telemetry off, on (sampling 1.0), exporting to rotel
	$(PY) bench/telemetry.py

bench-http: setup ## client CPU per upstream request at 1 and 256 in flight: httpx, aiohttp, http1
	$(PY) bench/http_clients.py

# COMPARE_ARGS passes options through, e.g. COMPARE_ARGS="--quick" or "--systems sb_fast,cpu".
bench-compare: setup ## k6 load on Switchboard, a bare grpc.aio server, LiteLLM's proxy (~30 min)
	$(PY) -m bench.compare $(COMPARE_ARGS)

lock: ## re-resolve the Python dependencies into requirements.lock
	rm -rf $(STAMPS) /tmp/switchboard-lock && $(PYTHON) -m venv /tmp/switchboard-lock
	/tmp/switchboard-lock/bin/pip install --quiet --upgrade pip
	/tmp/switchboard-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/switchboard-lock/bin/pip freeze --all --exclude-editable | grep -v -E "^(pip|switchboard)==" > requirements.lock

clean: ## remove everything the build made
	rm -rf $(VENV) $(STAMPS) ratelimit-rs/target tools/node_modules server/switchboard/api/pb server/switchboard/*.so
