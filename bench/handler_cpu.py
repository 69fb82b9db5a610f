"""CPU per call of Switchboard's own code: the gRPC handlers without the gRPC server.

Under k6 the gateway's CPU is gRPC's, the upstream HTTP's and Switchboard's
own; only the last is this project's to cut, and the machine's noise hides
a few microseconds of it in a load test. This drives the Complete and
StreamComplete handlers in process, as the server calls them (bytes in, a
message out, serialised), against the benchmark's upstream (bench/compare/
upstream.py, zero delay) in another process, with CONCURRENCY calls always
in flight. Beside them runs the relay: the same upstream call, JSON and
protobuf work with nothing else, so `own` is what the gateway adds.

    python bench/handler_cpu.py [--calls 20000] [--concurrency 128] [--repeats 3]
    python bench/handler_cpu.py --profile complete   # cProfile's top entries

The process and the upstream are pinned to different cores where there are
two; each figure is the lowest of the repeats (noise only ever adds).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare.systems import start_upstream, switchboard_config
from bench.http_clients import measure
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.server import Slots, _gateway_handlers
from switchboard.api.servicer import GatewayServicer
from switchboard.app import build_gateway
from switchboard.config import parse_settings
from switchboard.providers.http1 import HttpClient, Request

REQUEST = pb.CompleteRequest(
    model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")], max_tokens=32
).SerializeToString()

Call = Callable[[], Awaitable[object]]


class _Context:
    """What the handlers read of grpc's ServicerContext on a call that succeeds."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "bench"),)

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: object, details: str = "", *args: object) -> None:
        raise RuntimeError(f"aborted: {code} {details}")


def _calls(handlers: dict[str, Any], client: HttpClient, upstream: str) -> dict[str, Call]:
    complete = handlers["Complete"].unary_unary
    stream = handlers["StreamComplete"].unary_stream
    context = _Context()
    target = Request.post(
        f"{upstream}/chat/completions",
        {"Content-Type": "application/json", "Authorization": "Bearer bench"},
    )

    async def relay() -> bytes:
        request = pb.CompleteRequest.FromString(REQUEST)
        messages = [{"role": "user", "content": m.content} for m in request.messages]
        body = json.dumps({"model": "bench-a", "messages": messages}).encode()
        answer = json.loads(await (await client.post(target, body)).read())
        reply = pb.CompleteResponse()
        reply.message.content = answer["choices"][0]["message"]["content"]
        return reply.SerializeToString()

    async def sb_complete() -> bytes:
        return pb.CompleteResponse.SerializeToString(await complete(REQUEST, context))

    async def sb_stream() -> list[bytes]:
        return [
            pb.StreamCompleteResponse.SerializeToString(event)
            async for event in stream(REQUEST, context)
        ]

    return {"relay": relay, "complete": sb_complete, "stream": sb_stream}


async def run(args: argparse.Namespace) -> None:
    upstream = start_upstream(0.0)
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(upstream.proc.popen.pid, {1})
        os.sched_setaffinity(0, {0})
    config = switchboard_config(upstream.url, fast_path=True)
    settings = parse_settings(yaml.safe_dump(config), source="bench", env={})
    gateway = build_gateway(settings)
    await gateway.start()
    handlers = _gateway_handlers(GatewayServicer(gateway, time.monotonic), Slots("bench", 10**6))
    client = HttpClient()
    calls = _calls(handlers, client, upstream.url)
    try:
        for call in calls.values():  # pools, latency samples and code paths warm
            for _ in range(300):
                await call()
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await measure(calls[args.profile], args.calls, args.concurrency)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
            return
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, call in calls.items():
                seconds = await measure(call, args.calls, args.concurrency)
                best[name] = min(best.get(name, seconds), seconds)
        print(f"{args.calls} calls x {args.repeats}, {args.concurrency} in flight (best of runs)")
        print(f"{'path':10} {'us/call':>8} {'own us':>8}")
        for name, seconds in best.items():
            own = "" if name == "relay" else f"{(seconds - best['relay']) * 1e6:8.1f}"
            print(f"{name:10} {seconds * 1e6:8.1f} {own}")
    finally:
        await client.aclose()
        await gateway.aclose()
        upstream.proc.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", choices=("relay", "complete", "stream"))
    uvloop.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
