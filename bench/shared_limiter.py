"""`python -m bench.shared_limiter`: what sharing limits through Redis costs per request.

Starts a redis-server on a free loopback port (tests/redis_server.py's
`RedisServer`), then times `try_acquire` + `commit` pairs one at a time
(each pair timed alone with perf_counter_ns) for the Redis-backed
`SharedLimiter` (two round trips per pair) and for the in-process native
`RateLimiter`, on one key and on two keys per call, and prints p50/p99 of
each in microseconds.

    python -m bench.shared_limiter [--pairs 5000] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio

from switchboard.limits import RateLimiter
from switchboard.limits.shared import SharedLimiter, SharedTicket
from tests.redis_server import RedisServer

BIG = 10**15  # limits that never bind: the bench measures the path, not refusals


def percentiles(ns: list[int]) -> tuple[float, float]:
    cuts = statistics.quantiles(ns, n=100, method="inclusive")
    return cuts[49] / 1_000, cuts[98] / 1_000


async def shared_pairs(port: int, keys: list[str], pairs: int) -> list[int]:
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
    try:
        shared = SharedLimiter(client, window_seconds=60.0, prefix="bench:", timeout_s=1.0)
        for key in keys:
            shared.configure(key, BIG, BIG)
        for _ in range(200):  # warm-up: connection, script load
            await shared.commit(await _admitted(shared, keys), 420)
        times = []
        for _ in range(pairs):
            start = time.perf_counter_ns()
            ticket = await _admitted(shared, keys)
            await shared.commit(ticket, 420)
            times.append(time.perf_counter_ns() - start)
        return times
    finally:
        await client.aclose()


async def _admitted(shared: SharedLimiter, keys: list[str]) -> SharedTicket:
    result = await shared.try_acquire(keys, 500)
    if not isinstance(result, SharedTicket):
        raise RuntimeError(f"bench limits bound: {result}")
    return result


def native_pairs(keys: list[str], pairs: int) -> list[int]:
    limiter = RateLimiter(window_seconds=60.0)
    for key in keys:
        limiter.configure(key, BIG, BIG)
    times = []
    for _ in range(pairs):
        start = time.perf_counter_ns()
        ticket = limiter.try_acquire(keys, 500)
        limiter.commit(ticket, 420)  # type: ignore[arg-type]
        times.append(time.perf_counter_ns() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_limiter", description=__doc__)
    parser.add_argument("--pairs", type=int, default=5_000)
    parser.add_argument("--uvloop", action="store_true", help="run the shared bench on uvloop")
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        parser.error("redis-server is not on PATH")
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, Path(directory))
        try:
            print(f"{args.pairs} try_acquire + commit pairs, one at a time; microseconds")
            print(f"{'limiter':<34} {'keys':>4} {'p50':>9} {'p99':>9}")
            for keys in (["deployment:a"], ["deployment:a", "key:caller"]):
                if args.uvloop:
                    import uvloop

                    shared = uvloop.run(shared_pairs(server.port, keys, args.pairs))
                else:
                    shared = asyncio.run(shared_pairs(server.port, keys, args.pairs))
                native = native_pairs(keys, args.pairs)
                loop = "uvloop" if args.uvloop else "asyncio"
                for name, ns in ((f"SharedLimiter (Redis, {loop})", shared),
                                 ("RateLimiter (in-process)", native)):  # fmt: skip
                    p50, p99 = percentiles(ns)
                    print(f"{name:<34} {len(keys):>4} {p50:>9.2f} {p99:>9.2f}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
