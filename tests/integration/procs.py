"""Real processes for integration tests: the simulator and the gateway, on loopback.

Each process binds port 0 and announces its address on one line; the test
reads that line instead of sleeping or polling.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0


class Proc:
    """A child process whose output is drained on threads, so it never blocks."""

    def __init__(
        self,
        args: list[str],
        *,
        ready: re.Pattern[str],
        stream: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env` adds to (or overrides) this process's environment for the child only."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._ready_line: re.Match[str] | None = None
        self._threads = [
            threading.Thread(
                target=self._drain, args=(self.popen.stdout, ready, stream == "stdout")
            ),
            threading.Thread(
                target=self._drain, args=(self.popen.stderr, ready, stream == "stderr")
            ),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        # A test that fails between start and terminate must not leave a server behind.
        atexit.register(self.kill)
        if not self._ready.wait(START_TIMEOUT_S) or self._ready_line is None:
            self.kill()
            raise RuntimeError(f"{args[:3]} did not start:\n" + "".join(self.lines[-40:]))

    def _drain(self, pipe: IO[str] | None, ready: re.Pattern[str], watch: bool) -> None:
        assert pipe is not None
        for line in pipe:
            self.lines.append(line)
            if watch and self._ready_line is None and (match := ready.search(line)):
                self._ready_line = match
                self._ready.set()
        self._ready.set()  # the process ended: wake the waiter

    @property
    def match(self) -> re.Match[str]:
        assert self._ready_line is not None
        return self._ready_line

    def terminate(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout)
        # The pipes are at their end once the process is gone: after this, output() is whole.
        for thread in self._threads:
            thread.join(timeout)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def output(self) -> str:
        return "".join(self.lines)


def start_sim(profiles_file: Path | None = None, profile: str = "instant") -> tuple[Proc, str]:
    args = [str(BIN / "switchboard"), "sim", "--listen", "127.0.0.1:0", "--profile", profile]
    if profiles_file is not None:
        args += ["--profiles-file", str(profiles_file)]
    proc = Proc(args, ready=re.compile(r"listening on (http://\S+/v1)"), stream="stderr")
    return proc, proc.match.group(1)


# How a gateway calls its upstreams: litellm, or the pooled-HTTP fast path
# (`switchboard.providers.fast_path`). Parity tests run on both.
PROVIDER_PATHS = ("litellm", "fast-path")


def gateway_config(
    sim_url: str,
    groups: dict[str, Iterable[str]],
    *,
    router_settings: dict[str, object] | None = None,
    switchboard: dict[str, object] | None = None,
    provider_path: str = "litellm",
) -> dict[str, object]:
    """A LiteLLM-format config whose deployments are simulator profiles."""
    if provider_path not in PROVIDER_PATHS:
        raise ValueError(f"provider_path: expected one of {PROVIDER_PATHS}")
    if provider_path == "fast-path":
        switchboard = {**(switchboard or {}), "providers": {"fast_path": True}}
    model_list = [
        {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{profile}",
                "api_base": sim_url,
                "api_key": "sim",
                "timeout": 20,
            },
            "model_info": {"id": f"{group}-{profile}"},
        }
        for group, profiles in groups.items()
        for profile in profiles
    ]
    config: dict[str, object] = {"model_list": model_list}
    if router_settings:
        config["router_settings"] = router_settings
    if switchboard:
        config["switchboard"] = switchboard
    return config


def start_gateway(
    config: dict[str, object],
    directory: Path,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> tuple[Proc, str]:
    """A gateway process serving `config`; `args` are added to `switchboard serve`'s."""
    path = directory / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [
        str(BIN / "switchboard"),
        "serve",
        "--config",
        str(path),
        "--listen",
        "127.0.0.1:0",
        *args,
    ]
    proc = Proc(command, ready=re.compile(r"serving on (\S+:\d+)"), stream="stdout", env=env)
    return proc, proc.match.group(1)


def assert_provider_path(proc: Proc, provider_path: str) -> None:
    """The ended gateway called its upstreams the way the test asked (its start-up log says)."""
    output = proc.output()
    said = re.search(r"provider fast path: (.*)", output)
    if provider_path == "litellm":
        assert said is None, output
    else:
        assert said is not None, output
        assert "no deployment is eligible" not in said.group(1), said.group(0)


@dataclass(frozen=True)
class Collector:
    """rotel, a real OpenTelemetry collector from PyPI, and where it listens for OTLP."""

    proc: Proc
    grpc_port: int
    http_port: int


def start_rotel(exporter: Sequence[str]) -> Collector:
    """rotel receiving OTLP on free loopback ports; `exporter` says where it sends."""
    import rotel

    grpc_port, http_port = free_port(), free_port()
    args = [
        str(Path(rotel.__file__).parent / "rotel-agent"),
        "start",
        "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
        *exporter,
    ]  # fmt: skip
    proc = Proc(args, ready=re.compile(r"Starting Rotel"), stream="stdout")
    return Collector(proc, grpc_port, http_port)


def free_port() -> int:
    """A loopback port free now (for tools that cannot bind port 0 and say which they got)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
