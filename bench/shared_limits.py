"""`python -m bench.shared_limits`: what sharing limits through Redis adds to a call.

Starts a redis-server on a free loopback port and an in-process simulator
at zero delay, then, side by side in one run:

1. **Per call.** The same gateway (fast path, one limited deployment, a
   limited caller key) answers `Complete` with limits in process and with
   limits shared through Redis; each call is timed alone (one at a time),
   then 64 at a time. The difference of the percentiles is the cost of the
   Redis path: one EVALSHA naming both keys on the call's path (acquires
   asked for in one turn of the event loop share a pipeline; settlements
   go later, batched).
2. **The local fast path.** Three shared admissions (three replicas) on one
   Redis offer 20x a deployment's rpm; the share of decisions made without a
   round trip (a remembered Redis denial, or this replica's own count) is
   the fast path's hit rate.

Results are printed and written to bench/results/shared-<time>.json.

    python -m bench.shared_limits [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio

from switchboard.app import build_gateway
from switchboard.config import Settings, parse_settings
from switchboard.domain import Caller, CompletionRequest, Message, Role, Sampling
from switchboard.limits import RateLimiter
from switchboard.limits.admission import Reservation, caller_key
from switchboard.limits.shared import SharedLimiter
from switchboard.limits.shared_admission import SharedAdmission
from switchboard.sim import SimProfile, SimServer
from tests.redis_server import RedisServer

RESULTS = Path(__file__).parent / "results"
BIG = 10**9  # limits that never bind in the per-call part


def settings(sim_url: str, redis_url: str | None) -> Settings:
    redis = f"  redis: {{url: '{redis_url}'}}\n" if redis_url else ""
    text = f"""
model_list:
  - model_name: chat
    litellm_params: {{model: openai/instant, api_base: '{sim_url}', api_key: sim,
                     rpm: {BIG}, tpm: {BIG}}}
    model_info: {{id: chat-1}}
switchboard:
  providers: {{fast_path: true}}
  keys: [{{name: bench, sha256: '{"0" * 64}', rpm: {BIG}, tpm: {BIG}}}]
{redis}"""
    return parse_settings(text, source="bench", env={})


def percentiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3}


async def per_call(sim_url: str, redis_url: str | None, calls: int) -> dict[str, Any]:
    config = settings(sim_url, redis_url)
    gateway = build_gateway(config, rng=random.Random(1))
    request = CompletionRequest(
        model="chat",
        messages=(Message(Role.USER, "Say hi"),),
        sampling=Sampling(max_tokens=8),
        caller=Caller(name="bench", limit_key=caller_key("bench")),
    )
    await gateway.start()
    try:
        for _ in range(200):  # warm-up: connections, the script, caches
            await gateway.complete(request, deadline=None)
        alone = []
        cpu_alone = time.process_time()
        for _ in range(calls):
            start = time.perf_counter()
            await gateway.complete(request, deadline=None)
            alone.append(time.perf_counter() - start)

        async def timed() -> float:
            start = time.perf_counter()
            await gateway.complete(request, deadline=None)
            return time.perf_counter() - start

        cpu_alone = (time.process_time() - cpu_alone) / calls
        crowd: list[float] = []
        cpu_crowd = time.process_time()
        for _ in range(max(1, calls // 64)):
            crowd += await asyncio.gather(*(timed() for _ in range(64)))
        cpu_crowd = (time.process_time() - cpu_crowd) / len(crowd)
        # This process's CPU per call (the gateway and the in-process simulator alike).
        cpu = {"alone": cpu_alone * 1e6, "at_64": cpu_crowd * 1e6}
        admission = gateway.admission
        result: dict[str, Any] = {
            "alone": percentiles(alone),
            "at_64": percentiles(crowd),
            "cpu_us_per_call": cpu,
        }
        if not isinstance(admission, SharedAdmission):
            return result
        return {
            **result,
            "round_trips": admission.stats.round_trips,
            # Acquires per pipeline: calls in one turn of the loop share a round trip.
            "acquires_per_batch": admission.shared.batched / admission.shared.batches,
        }
    finally:
        await gateway.aclose()


async def fast_path(redis_url: str, offered: int) -> dict[str, Any]:
    text = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/m, rpm: 100}, model_info: {id: d}}
"""
    (deployment,) = parse_settings(text, source="bench", env={}).deployments
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(3)]
    replicas = [
        SharedAdmission(
            RateLimiter(window_seconds=60.0),
            SharedLimiter(client, window_seconds=60.0, prefix="bench:fast:"),
            [deployment],
            time.monotonic,
            local_share=1 / 3,
            replica_id=f"r{i}",
            rng=random.Random(i),
        )
        for i, client in enumerate(clients)
    ]
    admitted = 0
    try:
        for replica in replicas:
            await replica.start()
        for i in range(offered):
            result = await replicas[i % 3].reserve(deployment, 20)
            if isinstance(result, Reservation):
                admitted += 1
                result.commit(20)
        for replica in replicas:
            await replica.flush()
        trips = sum(r.stats.round_trips for r in replicas)
        avoided = sum(r.stats.avoided for r in replicas)
        return {
            "offered": offered,
            "admitted": admitted,
            "round_trips": trips,
            "avoided": avoided,
            "hit_rate": avoided / (avoided + trips),
        }
    finally:
        for replica in replicas:
            await replica.aclose()
        for client in clients:
            await client.aclose()


async def run(calls: int) -> dict[str, Any]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, Path(directory))
        try:
            profiles = {"instant": SimProfile()}
            async with SimServer(profiles, default_profile="instant") as sim:
                url = f"{sim.base_url}"
                # Interleaved, so drift on a noisy machine hits both alike.
                local = await per_call(url, None, calls)
                shared = await per_call(url, server.url, calls)
                local_again = await per_call(url, None, calls)
            hits = await fast_path(server.url, 2_000)
        finally:
            server.stop()
    added = {
        mode: {
            "p50_ms": shared[mode]["p50_ms"]
            - min(local[mode]["p50_ms"], local_again[mode]["p50_ms"]),
            "p99_ms": shared[mode]["p99_ms"]
            - min(local[mode]["p99_ms"], local_again[mode]["p99_ms"]),
        }
        for mode in ("alone", "at_64")
    }
    added_cpu = {
        mode: shared["cpu_us_per_call"][mode]
        - min(local["cpu_us_per_call"][mode], local_again["cpu_us_per_call"][mode])
        for mode in ("alone", "at_64")
    }
    return {
        "added_cpu_us_per_call": added_cpu,
        "calls": calls,
        "local": local,
        "shared": shared,
        "local_again": local_again,
        "added_by_redis": added,
        "fast_path": hits,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_limits", description=__doc__)
    parser.add_argument("--calls", type=int, default=3_000)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.calls))
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"shared-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("Complete through the gateway, ms (p50 / p99):")
    for mode in ("alone", "at_64"):
        row = [result[name][mode] for name in ("local", "shared", "local_again")]
        cells = "  ".join(f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f}" for r in row)
        add = result["added_by_redis"][mode]
        print(
            f"  {mode:6} local, shared, local again: {cells}   "
            f"added: {add['p50_ms']:+.3f} / {add['p99_ms']:+.3f}"
        )
    cpu = result["added_cpu_us_per_call"]
    print(
        f"  CPU added per call (this process): alone {cpu['alone']:+.0f} us, "
        f"at 64 {cpu['at_64']:+.0f} us"
    )
    print(f"  acquires per Redis round trip: {result['shared']['acquires_per_batch']:.2f}")
    hits = result["fast_path"]
    print(
        f"fast path: {hits['offered']} offered to 3 replicas at 20x rpm, "
        f"{hits['admitted']} admitted, {hits['round_trips']} round trips, "
        f"{hits['avoided']} decided locally: hit rate {hits['hit_rate']:.1%}"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
