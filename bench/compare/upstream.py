"""A minimal OpenAI-compatible upstream for the comparison benchmark.

Every system under test calls this process, so it must cost as little CPU per
call as possible: the answers are encoded once at start-up, the handler only
parses the request JSON (to know whether to stream) and writes bytes, access
logging is off and the loop is uvloop. `--delay-ms` models the provider's
latency: it is waited before answering (for streams, before the first chunk,
so the response headers and the first chunk leave together and a client's
time to first byte is the time to first chunk).

    python -m bench.compare.upstream [--delay-ms 0] [--port 0]

Prints `upstream: listening on http://127.0.0.1:PORT/v1` once it accepts calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket

import uvloop
from aiohttp import web

MODEL = "bench-a"
CREATED = 1_700_000_000
# About 20 tokens, in five pieces for streams.
PIECES = (
    "Hi there!",
    " This is the benchmark",
    " upstream answering with",
    " a fixed",
    " short reply.",
)
USAGE = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29}


def _completion() -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(PIECES)},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _event(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
    chunk: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def _stream_events() -> tuple[list[bytes], bytes]:
    """The SSE events of one streamed answer, and the usage event (sent when asked)."""
    events = []
    for i, piece in enumerate(PIECES):
        delta: dict[str, str] = {"content": piece}
        if i == 0:
            delta["role"] = "assistant"
        events.append(_event([{"index": 0, "delta": delta, "finish_reason": None}]))
    events.append(_event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    return events, _event([], USAGE)


COMPLETION = _completion()
EVENTS, USAGE_EVENT = _stream_events()
DONE = b"data: [DONE]\n\n"


def make_app(delay_s: float) -> web.Application:
    async def complete(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if not body.get("stream"):
            return web.Response(body=COMPLETION, content_type="application/json")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for event in EVENTS:
            await response.write(event)
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(USAGE_EVENT)
        await response.write(DONE)
        await response.write_eof()
        return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/chat/completions", complete)
    app.router.add_get("/health", health)
    return app


async def serve(host: str, port: int, delay_s: float) -> None:
    runner = web.AppRunner(make_app(delay_s), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    # A deep backlog: 256 clients connect at once at the start of every step.
    await web.SockSite(runner, sock, backlog=4096).start()
    print(f"upstream: listening on http://{host}:{bound}/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
