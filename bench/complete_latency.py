"""Latency of one Complete through Switchboard beside the simulator called directly.

Three ways against the same simulator process (profile `instant`: zero
upstream delay), in the same run, alternating in blocks so machine noise hits
all alike: the simulator over HTTP, a gateway calling it through litellm, and
a second gateway with `switchboard.providers.fast_path` on (pooled HTTP).
Sequential calls from one Python client each way:

    python bench/complete_latency.py [--calls 1000]

Prints p50/p95/p99 per path and each gateway's p50 ratio to direct HTTP;
`--json` for machines.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from tests.integration.procs import gateway_config, start_gateway, start_sim

BLOCK = 50
PROMPT = "Say hi"
# Result name -> the gateway's provider path (tests/integration/procs.py).
PATHS = {"switchboard": "litellm", "switchboard_fast_path": "fast-path"}
LABELS = {
    "direct_http": "direct HTTP",
    "switchboard": "switchboard (litellm)",
    "switchboard_fast_path": "switchboard (fast path)",
}


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
    gateways = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            addresses = {}
            for name, provider_path in PATHS.items():
                directory = Path(scratch) / name
                directory.mkdir()
                config = gateway_config(sim_url, {"chat": ["instant"]}, provider_path=provider_path)
                proc, addresses[name] = start_gateway(config, directory)
                gateways.append(proc)
            results = run(sim_url, addresses, args.calls, args.warmup)
    finally:
        for proc in gateways:
            proc.terminate()
        sim_proc.terminate()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    header = ("path", "n", "p50 ms", "p95 ms", "p99 ms", "p50/direct")
    print("{:26s} {:>5s} {:>8s} {:>8s} {:>8s} {:>11s}".format(*header))
    direct = results["direct_http"]
    assert isinstance(direct, dict)
    for name, label in LABELS.items():
        r = results[name]
        assert isinstance(r, dict)
        ratio = r["p50"] / direct["p50"]
        print(
            f"{label:26s} {r['n']:5.0f} {r['p50'] * 1e3:8.3f} {r['p95'] * 1e3:8.3f} "
            f"{r['p99'] * 1e3:8.3f} {ratio:10.2f}x"
        )
    return 0


def run(
    sim_url: str, addresses: dict[str, str], calls: int, warmup: int
) -> dict[str, dict[str, float] | float]:
    body = {"model": "instant", "messages": [{"role": "user", "content": PROMPT}]}
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)]
    )
    samples: dict[str, list[float]] = {name: [] for name in LABELS}
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(base_url=sim_url, timeout=30))

        def call_direct() -> None:
            response = http.post("/chat/completions", json=body)
            response.raise_for_status()

        calls_by_name: dict[str, Callable[[], object]] = {"direct_http": call_direct}
        for name, address in addresses.items():
            stub = pb_grpc.GatewayStub(stack.enter_context(grpc.insecure_channel(address)))
            calls_by_name[name] = functools.partial(stub.Complete, request, timeout=30)

        for _ in range(warmup):
            for call in calls_by_name.values():
                call()
        done = 0
        while done < calls:
            block = min(BLOCK, calls - done)
            for name, call in calls_by_name.items():
                for _ in range(block):
                    start = time.perf_counter()
                    call()
                    samples[name].append(time.perf_counter() - start)
            done += block
    results: dict[str, dict[str, float] | float] = {
        name: percentiles(values) for name, values in samples.items()
    }
    direct_p50 = percentiles(samples["direct_http"])["p50"]
    for name in PATHS:
        p50 = percentiles(samples[name])["p50"]
        results[f"ratio_p50_{name}"] = p50 / direct_p50
        results[f"overhead_p50_ms_{name}"] = (p50 - direct_p50) * 1e3
    return results


if __name__ == "__main__":
    raise SystemExit(main())
