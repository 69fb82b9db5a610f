"""One load step: k6 offers a fixed rate to one target, measured from outside.

k6 (a Go load generator, so the client is not another Python process competing
for the GIL-bound servers' cores in the same way) runs the scripts in k6/.
Its summary gives the calls' counts and latency percentiles; this module adds
what k6 cannot see: the CPU and peak RSS of the system under test, of the
upstream and of k6 itself over exactly the measured scenario (k6 logs a marker
when that scenario starts), the CPU that other processes on the machine used
meanwhile, and how many client and upstream connections were established
halfway through (`ss`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.compare.meter import Window

K6 = Path(sys.executable).parent / "k6"
SCRIPTS = Path(__file__).resolve().parent / "k6"
PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
MARKER = "BENCH_MEASURE_START"
START_TIMEOUT_S = 90.0
# k6 waits up to the scripts' gracefulStop (5 s) for calls in flight, then writes its summary.
END_TIMEOUT_S = 60.0
UNARY_LATENCY = "grpc_req_duration{scenario:measure}"


@dataclass(frozen=True)
class Target:
    """What k6 calls: its script, the script's environment, and the port clients connect to."""

    script: str
    env: Mapping[str, str]
    port: int


@dataclass
class Step:
    """The figures of one step; latencies in milliseconds, rates per second."""

    offered_rate: float
    duration_s: float
    vus: int
    ok: int = 0
    bad: int = 0
    dropped: int = 0
    success_rate: float = 0.0
    completed_rate: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttfc_ms: dict[str, float] | None = None
    sut_cores: float | None = None
    sut_rss_mb: float | None = None
    upstream_cores: float | None = None
    k6_cores: float | None = None
    background_cores: float | None = None
    window_s: float | None = None
    client_conns: int | None = None
    upstream_conns: int | None = None
    error: str | None = None


def run_step(
    target: Target,
    *,
    rate: float,
    duration_s: float,
    vus: int,
    roots: Mapping[str, int],
    upstream_port: int | None,
    log_path: Path,
    connect_s: float = 2.0,
    cpu_skip_s: float = 0.0,
) -> Step:
    """Run k6 once; `roots` names the process trees to measure (`sut`, `upstream`).

    The CPU window opens `cpu_skip_s` after the measured scenario starts (to skip
    a ramp) and closes when it ends.
    """
    step = Step(offered_rate=rate, duration_s=duration_s, vus=vus)
    summary_path = log_path.with_suffix(".summary.json")
    summary_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        **target.env,
        "RATE": f"{rate:g}",
        "DURATION_S": f"{duration_s:g}",
        "VUS": str(vus),
        "CONNECT_S": f"{connect_s:g}",
        "PROTO_ROOT": str(PROTO_ROOT),
        "SUMMARY": str(summary_path),
    }
    args = [str(K6), "run", "--quiet", "--no-color", "--address", "", str(SCRIPTS / target.script)]
    with log_path.open("w") as log:
        k6 = subprocess.Popen(
            args, stdout=log, stderr=subprocess.PIPE, text=True, env=env, cwd=log_path.parent
        )
        started = threading.Event()
        reader = threading.Thread(target=_follow, args=(k6.stderr, log, started), daemon=True)
        reader.start()
        try:
            if not started.wait(START_TIMEOUT_S + connect_s) or k6.poll() is not None:
                step.error = "k6 ended before the measured scenario started"
                return step
            marker_at = time.perf_counter()
            window = Window({**roots, "k6": k6.pid})
            _sleep_until(marker_at + cpu_skip_s)
            window.start()
            _sleep_until(marker_at + duration_s / 2)
            step.client_conns = established(target.port)
            step.upstream_conns = established(upstream_port) if upstream_port else None
            _sleep_until(marker_at + duration_s)
            usage = window.stop()
            k6.wait(END_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            step.error = "k6 did not end"
            return step
        finally:
            if k6.poll() is None:
                k6.kill()
                k6.wait()
            reader.join(5)
    step.window_s = usage.wall_s
    step.background_cores = usage.background_cores
    step.k6_cores = usage.trees["k6"].cores
    if "sut" in usage.trees:
        step.sut_cores = usage.trees["sut"].cores
        step.sut_rss_mb = usage.trees["sut"].peak_rss_mb
    if "upstream" in usage.trees:
        step.upstream_cores = usage.trees["upstream"].cores
    if not summary_path.exists():
        step.error = f"k6 wrote no summary (exit {k6.returncode})"
        return step
    _read_summary(step, json.loads(summary_path.read_text())["metrics"])
    return step


def _read_summary(step: Step, metrics: Mapping[str, Any]) -> None:
    def count(name: str) -> int:
        return int(metrics.get(name, {}).get("values", {}).get("count", 0))

    step.ok, step.bad, step.dropped = (
        count("bench_ok"),
        count("bench_bad"),
        count("dropped_iterations"),
    )
    calls = step.ok + step.bad
    step.success_rate = step.ok / calls if calls else 0.0
    step.completed_rate = step.ok / step.duration_s
    latency = metrics.get("bench_latency") or metrics.get(UNARY_LATENCY)
    if latency:
        step.latency_ms = _percentiles(latency["values"])
    if ttfc := metrics.get("bench_ttfc"):
        step.ttfc_ms = _percentiles(ttfc["values"])


def _percentiles(values: Mapping[str, float]) -> dict[str, float]:
    names = {"p50": "med", "p95": "p(95)", "p99": "p(99)", "max": "max", "mean": "avg"}
    return {ours: float(values[theirs]) for ours, theirs in names.items() if theirs in values}


def established(port: int) -> int:
    """TCP connections established to a local listening port (the server's ends)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def _follow(pipe: IO[str] | None, log: IO[str], started: threading.Event) -> None:
    assert pipe is not None
    for line in pipe:
        log.write(line)
        if MARKER in line:
            started.set()
    started.set()  # k6 ended: wake the waiter


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.perf_counter()))
