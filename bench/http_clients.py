"""CPU per upstream request of the HTTP clients the fast path could use.

The fast path's client decides how a call's cost grows with concurrency:
httpx's pool (httpcore) checks every pooled connection on each request, so
its cost grows with the number of open connections. This measures the
client process's own CPU per request, at 1 and at 256 requests in flight,
against the simulator (profile `instant`) in another process, for httpx,
aiohttp (as configured by default, and without its cookie jar and
timeouts: `aiohttp_lean`) and the fast path's own client
(`switchboard.providers.http1`, on httptools):

    python bench/http_clients.py [--requests 4000]

Prints microseconds of client CPU per request for each client and
concurrency, and each client's ratio of 256 to 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from switchboard.providers.http1 import HttpClient, Request
from tests.integration.procs import start_sim

BODY = json.dumps(
    {"model": "instant", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16}
).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sim"}

Post = Callable[[], Awaitable[bytes]]


async def measure(post: Post, requests: int, concurrency: int) -> float:
    """Client CPU seconds per request, with `concurrency` requests always in flight."""
    for _ in range(50):  # warm the pool and the code paths
        await post()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await post()

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / requests


async def with_httpx(url: str, requests: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits) as client:

        async def post() -> bytes:
            response = await client.post(url, content=BODY, headers=HEADERS)
            return response.content

        return await measure(post, requests, concurrency)


async def with_aiohttp(url: str, requests: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> bytes:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                return await response.read()

        return await measure(post, requests, concurrency)


async def with_aiohttp_lean(url: str, requests: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=30)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    ) as session:

        async def post() -> bytes:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                return await response.read()

        return await measure(post, requests, concurrency)


async def with_http1(url: str, requests: int, concurrency: int) -> float:
    client = HttpClient(max_connections=1024)
    request = Request.post(url, HEADERS)
    try:

        async def post() -> bytes:
            response = await client.post(request, BODY)
            return await response.read()

        return await measure(post, requests, concurrency)
    finally:
        await client.aclose()


CLIENTS = {
    "httpx": with_httpx,
    "aiohttp": with_aiohttp,
    "aiohttp_lean": with_aiohttp_lean,
    "http1": with_http1,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    sim, base = start_sim(profile="instant")
    url = f"{base}/chat/completions"
    try:
        results: dict[str, dict[int, float]] = {name: {} for name in CLIENTS}
        for concurrency in (1, 256):
            for name, run in CLIENTS.items():
                results[name][concurrency] = uvloop.run(run(url, args.requests, concurrency))
    finally:
        sim.terminate()
    print(f"{'client':10s} {'us/req @1':>10s} {'us/req @256':>12s} {'256/1':>7s}")
    for name, by in results.items():
        print(f"{name:10s} {by[1] * 1e6:10.1f} {by[256] * 1e6:12.1f} {by[256] / by[1]:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
