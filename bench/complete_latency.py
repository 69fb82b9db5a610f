"""Latency of one Complete through Switchboard beside the simulator called directly.

Both run against the same simulator process (profile `instant`: zero upstream
delay), in the same run, alternating in blocks so machine noise hits both
alike. Sequential calls from one Python client each way:

    python bench/complete_latency.py [--calls 1000]

Prints p50/p95/p99 per path and the ratio of the p50s; `--json` for machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from tests.integration.procs import gateway_config, start_gateway, start_sim

BLOCK = 50
PROMPT = "Say hi"


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "n": len(samples)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sim_proc, sim_url = start_sim(profile="instant")
    with tempfile.TemporaryDirectory() as scratch:
        config = gateway_config(sim_url, {"chat": ["instant"]})
        gw_proc, address = start_gateway(config, Path(scratch))
        try:
            results = run(sim_url, address, args.calls, args.warmup)
        finally:
            gw_proc.terminate()
            sim_proc.terminate()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name in ("direct_http", "switchboard"):
        r = results[name]
        print(
            f"{name:12s} n={r['n']:.0f}  p50={r['p50'] * 1e3:7.3f} ms  "
            f"p95={r['p95'] * 1e3:7.3f} ms  p99={r['p99'] * 1e3:7.3f} ms"
        )
    print(f"p50 ratio switchboard/direct: {results['ratio_p50']:.2f}x")
    print(f"p50 overhead: {results['overhead_p50_ms']:.3f} ms")
    return 0


def run(sim_url: str, address: str, calls: int, warmup: int) -> dict[str, dict[str, float] | float]:
    body = {"model": "instant", "messages": [{"role": "user", "content": PROMPT}]}
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)]
    )
    direct: list[float] = []
    gateway: list[float] = []
    with httpx.Client(base_url=sim_url, timeout=30) as http, grpc.insecure_channel(address) as ch:
        stub = pb_grpc.GatewayStub(ch)

        def call_direct() -> None:
            response = http.post("/chat/completions", json=body)
            response.raise_for_status()

        def call_gateway() -> None:
            stub.Complete(request, timeout=30)

        for _ in range(warmup):
            call_direct()
            call_gateway()
        done = 0
        while done < calls:
            block = min(BLOCK, calls - done)
            for samples, call in ((direct, call_direct), (gateway, call_gateway)):
                for _ in range(block):
                    start = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - start)
            done += block
    d, g = percentiles(direct), percentiles(gateway)
    return {
        "direct_http": d,
        "switchboard": g,
        "ratio_p50": g["p50"] / d["p50"],
        "overhead_p50_ms": (g["p50"] - d["p50"]) * 1e3,
    }


if __name__ == "__main__":
    raise SystemExit(main())
