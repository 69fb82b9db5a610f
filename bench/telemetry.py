"""Throughput of Complete with telemetry off, on (sampling 1.0 and 0.1), and exporting to rotel.

Four gateway processes (fast path on) against one simulator (profile `instant`), loaded in
turn by the same closed-loop client (a fixed number of calls in flight), in
interleaved rounds so machine noise hits each alike:

- off:    no telemetry configured (the recorder is a no-op);
- on:     the SDK records a span per RPC and per attempt at sampling ratio
          1.0 and every metric, exported to a sink that drops them;
- sampled: the same at sampling ratio 0.1 (metrics are never sampled);
- export: as `on`, exported over OTLP/gRPC to rotel (a real collector,
          forwarding to its blackhole exporter).

    python bench/telemetry.py [--seconds 8] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from tests.integration.procs import Proc, gateway_config, start_rotel, start_sim

MODES = ("off", "on", "sampled", "export")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.config)

    sim_proc, sim_url = start_sim(profile="instant")
    collector = start_rotel(["--exporter", "blackhole"])
    gateways: dict[str, Proc] = {}
    addresses: dict[str, str] = {}
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for mode in MODES:
                telemetry: dict[str, object] = {}
                if mode == "export":
                    telemetry = {"otlp_endpoint": f"http://127.0.0.1:{collector.grpc_port}"}
                config = gateway_config(
                    sim_url,
                    {"chat": ["instant"]},
                    switchboard={"telemetry": telemetry, "providers": {"fast_path": True}},
                )
                path = Path(scratch) / f"{mode}.yaml"
                path.write_text(yaml.safe_dump(config))
                proc = Proc(
                    [sys.executable, __file__, "--serve", mode, "--config", str(path)],
                    ready=re.compile(r"serving on (\S+:\d+)"),
                    stream="stdout",
                )
                gateways[mode], addresses[mode] = proc, proc.match.group(1)
            for _ in range(args.rounds):
                for mode in MODES:
                    rate = asyncio.run(load(addresses[mode], args.seconds, args.concurrency))
                    results[mode].append(rate)
        finally:
            for proc in gateways.values():
                proc.terminate()
            collector.proc.terminate()
            sim_proc.terminate()
    report(results, args)
    return 0


def serve(mode: str, config: str) -> int:
    """One gateway process; `on` gets an SDK whose exporters drop everything."""
    import uvloop
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from switchboard.app import serve as serve_app
    from switchboard.config import TelemetrySettings, load_settings
    from switchboard.telemetry import Telemetry, build_telemetry, plan_export

    class DropSpans(SpanExporter):
        def export(self, spans: Sequence[object]) -> SpanExportResult:  # type: ignore[override]
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(
            self, metrics_data: object, timeout_millis: float = 0, **_: object
        ) -> MetricExportResult:  # type: ignore[override]
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **_: object) -> None:
            return None

    settings = load_settings(config)
    telemetry: Telemetry | None = None
    if mode in ("on", "sampled"):
        ratio = 1.0 if mode == "on" else 0.1
        telemetry = build_telemetry(
            plan_export(TelemetrySettings(sampling_ratio=ratio), {}),
            span_processors=[BatchSpanProcessor(DropSpans())],
            metric_readers=[PeriodicExportingMetricReader(DropMetrics(), 10_000)],
        )

    def ready(port: int) -> None:
        print(f"switchboard: serving on 127.0.0.1:{port}", flush=True)

    from switchboard.config import Address

    uvloop.run(
        serve_app(settings, listen=Address("127.0.0.1", 0), on_ready=ready, telemetry=telemetry)
    )
    return 0


async def load(address: str, seconds: float, concurrency: int) -> float:
    """Completed calls per second with `concurrency` calls always in flight."""
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")]
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        for _ in range(20):  # warm-up
            await stub.Complete(request, timeout=30)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await stub.Complete(request, timeout=30)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(
        f"Complete throughput, {args.concurrency} in flight, {args.rounds} rounds of "
        f"{args.seconds:.0f} s per mode, interleaved (cpus: {os.cpu_count()})"
    )
    base = statistics.mean(results["off"])
    for mode in MODES:
        rate = statistics.mean(results[mode])
        rounds = ", ".join(f"{r:.0f}" for r in results[mode])
        print(f"  {mode:7s} {rate:8.1f} calls/s  ({rate / base:6.1%} of off)  rounds: {rounds}")


if __name__ == "__main__":
    raise SystemExit(main())
