"""The systems under test, and how to start each one against the upstream.

Each system runs alone (started before its ladder, stopped after), so no two
compete for the machine's two cores. All answer the same request with the same
two deployments of one model group `chat`, both pointing at the benchmark
upstream, with limits high enough never to bind: what differs is only what
sits between k6 and the upstream.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.compare import litellm_proxy
from bench.compare.loadgen import Target
from tests.integration.procs import BIN, Proc, gateway_config, start_gateway

REPO = Path(__file__).resolve().parents[2]
# Python children run modules of this package whatever the caller's directory.
CHILD_ENV = {"PYTHONPATH": str(REPO)}
DEPLOYMENTS = ("bench-a", "bench-b")
LIMITS = {"api_key": "bench", "rpm": 1_000_000, "tpm": 1_000_000_000, "timeout": 30}


@dataclass(frozen=True)
class System:
    name: str
    label: str
    # What serves the calls: direct (the upstream itself), bare_grpc, relay (bare_grpc making
    # the upstream call), switchboard, litellm_proxy.
    server: str
    stream: bool = False
    fast_path: bool = True
    workers: int = 1
    start_rate: float = 100.0

    @property
    def uses_upstream(self) -> bool:
        return self.server != "bare_grpc"


SYSTEMS = (
    System("direct", "upstream direct (HTTP)", "direct"),
    System("direct_stream", "upstream direct (HTTP, stream)", "direct", stream=True),
    System("bare_grpc", "bare grpc.aio (Complete)", "bare_grpc"),
    System("relay", "grpc.aio relay, no gateway (Complete)", "relay"),
    System("relay_stream", "grpc.aio relay, no gateway (StreamComplete)", "relay", stream=True),
    System("sb_fast", "Switchboard fast path (Complete)", "switchboard"),
    System("sb_fast_stream", "Switchboard fast path (StreamComplete)", "switchboard", stream=True),
    System("sb_litellm", "Switchboard litellm path (Complete)", "switchboard", fast_path=False),
    System(
        "sb_litellm_stream",
        "Switchboard litellm path (StreamComplete)",
        "switchboard",
        stream=True,
        fast_path=False,
    ),
    System("sb_fast_w2", "Switchboard fast path, --workers 2 (Complete)", "switchboard", workers=2),
    System("litellm_proxy", "LiteLLM proxy (HTTP)", "litellm_proxy", start_rate=10.0),
    System(
        "litellm_proxy_stream",
        "LiteLLM proxy (HTTP, stream)",
        "litellm_proxy",
        stream=True,
        start_rate=10.0,
    ),
)
BY_NAME = {system.name: system for system in SYSTEMS}


class NotAvailable(Exception):
    """The system cannot run here (for example a flag this Switchboard does not have yet)."""


@dataclass(frozen=True)
class Upstream:
    proc: Proc
    url: str  # http://127.0.0.1:PORT/v1
    port: int
    delay_ms: float


@dataclass(frozen=True)
class Running:
    target: Target
    pid: int  # the root of the system's process tree (the upstream's when direct)


def start_upstream(delay_ms: float) -> Upstream:
    args = [sys.executable, "-m", "bench.compare.upstream", "--delay-ms", f"{delay_ms:g}"]
    proc = Proc(
        args, ready=re.compile(r"listening on (http://\S+/v1)"), stream="stdout", env=CHILD_ENV
    )
    url = proc.match.group(1)
    return Upstream(proc, url, int(url.rsplit(":", 1)[1].split("/")[0]), delay_ms)


def switchboard_config(upstream_url: str, *, fast_path: bool) -> dict[str, object]:
    """Two deployments of group `chat` on the upstream, in the gateway's (LiteLLM) format."""
    path = "fast-path" if fast_path else "litellm"
    config = gateway_config(upstream_url, {"chat": DEPLOYMENTS}, provider_path=path)
    model_list: list[dict[str, Any]] = config["model_list"]  # type: ignore[assignment]
    for deployment, name in zip(model_list, DEPLOYMENTS, strict=True):
        deployment["litellm_params"].update(LIMITS)
        deployment["model_info"]["id"] = name
    return config


@contextlib.contextmanager
def launch(
    system: System, upstream: Upstream, scratch: Path, litellm: Path | None
) -> Iterator[Running]:
    """Start `system` (stopped again on exit); `litellm` is the proxy's command."""
    scratch.mkdir(parents=True, exist_ok=True)
    if system.server == "direct":
        target = _http_target(upstream.url, upstream.port, "/health", system, "bench-a")
        yield Running(target, upstream.proc.popen.pid)
        return
    try:
        proc, running = _start(system, upstream, scratch, litellm)
    except RuntimeError as error:  # Proc: the process ended before its ready line
        raise NotAvailable(f"did not start: {str(error).splitlines()[-1][:200]}") from error
    try:
        yield running
    finally:
        try:
            proc.terminate(timeout=30)
        finally:
            proc.kill()


def _start(
    system: System, upstream: Upstream, scratch: Path, litellm: Path | None
) -> tuple[Proc, Running]:
    method = "StreamComplete" if system.stream else "Complete"
    if system.server in ("bare_grpc", "relay"):
        relay = ["--upstream", upstream.url] if system.server == "relay" else []
        proc = Proc(
            [sys.executable, "-m", "bench.compare.bare_grpc", *relay],
            ready=re.compile(r"serving on (\S+:\d+)"),
            stream="stdout",
            env=CHILD_ENV,
        )
        return proc, _grpc_running(proc, proc.match.group(1), method)
    if system.server == "switchboard":
        config = switchboard_config(upstream.url, fast_path=system.fast_path)
        proc, address = _start_switchboard(config, scratch, system.workers)
        return proc, _grpc_running(proc, address, method)
    if system.server == "litellm_proxy":
        assert litellm is not None
        config = switchboard_config(upstream.url, fast_path=False)
        deployments: list[dict[str, object]] = config["model_list"]  # type: ignore[assignment]
        proc, port = litellm_proxy.start(litellm, deployments, scratch)
        base = f"http://127.0.0.1:{port}"
        target = _http_target(f"{base}/v1", port, "/health/liveliness", system, "chat")
        return proc, Running(target, proc.popen.pid)
    raise ValueError(f"unknown server {system.server!r}")


def _start_switchboard(config: dict[str, object], scratch: Path, workers: int) -> tuple[Proc, str]:
    if workers == 1:
        return start_gateway(config, scratch)
    path = scratch / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [str(BIN / "switchboard"), "serve", "--config", str(path), "--listen", "127.0.0.1:0"]
    args += ["--workers", str(workers)]
    try:
        proc = Proc(args, ready=re.compile(r"serving on (\S+:\d+)"), stream="stdout")
    except RuntimeError as error:
        text = str(error)
        if "unrecognized arguments" in text or "--workers" in text:
            raise NotAvailable("`switchboard serve` refused --workers") from error
        raise NotAvailable(f"did not start: {text.splitlines()[-1]}") from error
    return proc, proc.match.group(1)


def _grpc_running(proc: Proc, address: str, method: str) -> Running:
    port = int(address.rsplit(":", 1)[1])
    return Running(Target("grpc.js", {"TARGET": address, "METHOD": method}, port), proc.popen.pid)


def _http_target(base: str, port: int, health: str, system: System, model: str) -> Target:
    env = {
        "TARGET": f"{base}/chat/completions",
        "CONNECT_URL": f"http://127.0.0.1:{port}{health}",
        "STREAM": "1" if system.stream else "0",
        "MODEL": model,
    }
    return Target("http.js", env, port)
