"""A scripted OpenAI-compatible upstream that answers badly on purpose, on loopback.

The model name in the request picks the kind of bad answer (`KINDS`), so one
server plays every hostile deployment and, with model `healthy`, a good one.
Every bad answer carries `SECRET`, a provider message quoting an organization
id and key fragments, so a test can check that none of it reaches a caller,
a log line or a span. It runs on its own event loop in a thread
(`BackgroundLoop`), so tests can drive the gateway with blocking stubs.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

SECRET = (
    "Rate limit reached for requests in organization org-AbCdEf123 on requests per min "
    "(sk-abc...wxyz). Key sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123 was used."
)
# Pieces of SECRET that must not leave the gateway in any form.
FRAGMENTS = (
    "Rate limit reached",
    "org-AbCdEf",
    "AbCdEf123",
    "sk-abc",
    "wxyz",
    "sk-proj",
    "AbCdEfGh",
)


def _error(status: int, code: object, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": SECRET, "type": "requests", "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _raw(status: int, body: str, content_type: str = "application/json") -> web.Response:
    return web.Response(status=status, text=body, content_type=content_type)


HTML = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    f"<body>{SECRET}</body></html>"
)


def _completion(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "hostile",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    body.update(override)
    return body


def _usage_json(value: str) -> str:
    """A completion whose prompt_tokens is `value` written raw (1e400 is not a Python float)."""
    text = json.dumps(_completion(usage={"prompt_tokens": 0, "completion_tokens": 1}))
    return text.replace('"prompt_tokens": 0', f'"prompt_tokens": {value}')


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "hostile", "choices": choices, **extra}  # fmt: skip


def _events(*events: dict[str, Any] | str) -> list[str]:
    """SSE events: dicts as JSON, strings as written."""
    return [e if isinstance(e, str) else json.dumps(e) for e in events]


GOOD_STREAM = _events(
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "hi"}),
    _chunk({}, "stop"),
    _chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}),
    "[DONE]",
)


def _usage_stream(value: str, *, late: bool = False) -> list[str]:
    """A stream whose usage chunk holds `value`, before the text, or `late`: after it."""
    usage = json.dumps(_chunk(None, usage={"prompt_tokens": 0, "completion_tokens": 1}))
    bad = usage.replace('"prompt_tokens": 0', f'"prompt_tokens": {value}')
    return [*GOOD_STREAM[:3], bad, "[DONE]"] if late else [bad, *GOOD_STREAM]


@dataclass(frozen=True)
class Kind:
    """How one hostile deployment answers a plain call (`answer`) and a stream (`events`).

    `events` None: the stream request gets `answer` too. `status_on_its_own`
    is the gRPC status the gateway must give a group with only this deployment.
    `stream_answers`: the provider paths on which its stream is a good answer
    with only its bill unreadable, once the text was delivered (litellm holds
    a stream's usage back to its end, wherever the provider sent it).
    """

    answer: Callable[[], web.Response]
    events: list[str] | None = None
    raw_stream: str | None = None
    status_on_its_own: tuple[str, ...] = ("UNAVAILABLE",)
    falls_back: bool = True
    stream_answers: tuple[str, ...] = ()


RATE_LIMITED = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")

KINDS: dict[str, Kind] = {
    # Retry-After values no one should believe.
    "ra-inf": Kind(lambda: _error(429, "rate_limit_exceeded", {"retry-after": "inf"}),
                   status_on_its_own=RATE_LIMITED),
    "ra-1e20": Kind(lambda: _error(429, "rate_limit_exceeded", {"retry-after": "1e20"}),
                    status_on_its_own=RATE_LIMITED),
    "ra-negative": Kind(lambda: _error(429, "rate_limit_exceeded", {"retry-after": "-5"}),
                        status_on_its_own=RATE_LIMITED),
    "ra-nan": Kind(lambda: _error(429, "rate_limit_exceeded", {"retry-after": "NaN"}),
                   status_on_its_own=RATE_LIMITED),
    "ra-garbage": Kind(lambda: _error(429, "rate_limit_exceeded", {"retry-after": "soon, ish"}),
                       status_on_its_own=RATE_LIMITED),
    "ra-ms-huge": Kind(
        lambda: _error(429, "rate_limit_exceeded",
                       {"retry-after-ms": "1e20", "x-ratelimit-reset-requests": "99999999999h"}),
        status_on_its_own=RATE_LIMITED,
    ),
    "ra-past-date": Kind(
        lambda: _error(
            429, "rate_limit_exceeded", {"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}
        ),
        status_on_its_own=RATE_LIMITED,
    ),
    # The provider's message quotes an organization and keys, at several statuses;
    # the 500's code is itself an organization id.
    "leak-429": Kind(lambda: _error(429, "rate_limit_exceeded", {"retry-after": "1"}),
                     status_on_its_own=RATE_LIMITED),
    "leak-500": Kind(lambda: _error(500, "org-AbCdEf123")),
    # The error table: a provider 400 is the request's fault, answered at once, no fallback.
    "leak-400": Kind(lambda: _error(400, "invalid_request_error"),
                     status_on_its_own=("INVALID_ARGUMENT",), falls_back=False),
    # The error table: the provider refusing our key is UNAVAILABLE (the caller did nothing
    # wrong; an operator must fix the key), never INTERNAL.
    "leak-401": Kind(lambda: _error(401, "invalid_api_key")),
    # Answers that are not chat completions.
    "bad-json": Kind(lambda: _raw(200, '{"choices": [{"message": ' + json.dumps(SECRET)),
                     events=['{"choices": [{"delta": ' + json.dumps(SECRET)]),
    "html-200": Kind(lambda: _raw(200, HTML, "text/html"), raw_stream=HTML),
    "html-502": Kind(lambda: _raw(502, HTML, "text/html")),
    "no-choices": Kind(lambda: web.json_response(_completion(choices=[])),
                       events=_events(_chunk(None), "[DONE]")),
    "missing-choices": Kind(
        lambda: web.json_response({"id": SECRET, "object": "chat.completion"}),
        events=_events({"id": "x", "object": "chat.completion.chunk"}, "[DONE]"),
    ),
    "wrong-types": Kind(
        lambda: web.json_response(
            _completion(choices=[{"index": 0, "message": {"content": {"text": SECRET}}}])
        ),
        events=_events(_chunk({"content": 42}), "[DONE]"),
    ),
    "usage-1e400": Kind(lambda: _raw(200, _usage_json("1e400")), events=_usage_stream("1e400")),
    "usage-negative": Kind(lambda: _raw(200, _usage_json("-3")), events=_usage_stream("-3"),
                           stream_answers=("litellm",)),
    "usage-2-63": Kind(lambda: _raw(200, _usage_json(str(2**63))), events=_usage_stream(str(2**63)),
                       stream_answers=("litellm",)),
    # Usage that cannot be read after the text was streamed: the text stands, the count is ours.
    "usage-late": Kind(lambda: _raw(200, _usage_json("1e400")),
                       events=_usage_stream("1e400", late=True),
                       stream_answers=("litellm", "fast-path")),
    # Streams that never send a chunk, or send something that is not one.
    "empty-stream": Kind(lambda: _raw(200, ""), events=[]),
    "done-only": Kind(lambda: _raw(200, ""), events=["[DONE]"]),
    "not-json-event": Kind(lambda: _raw(200, "{nope " + SECRET), events=["{nope " + SECRET]),
}  # fmt: skip


@dataclass
class HostileUpstream:
    """The server; `calls` counts requests by model (what the gateway really sent)."""

    port: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        stream = bool(body.get("stream"))
        self.calls[f"{model}:{'stream' if stream else 'complete'}"] += 1
        if model == "healthy":
            return (
                await self._sse(request, GOOD_STREAM)
                if stream
                else web.json_response(_completion())
            )
        kind = KINDS.get(model)
        if kind is None:
            return _error(404, "model_not_found")
        if stream and kind.raw_stream is not None:
            return _raw(200, kind.raw_stream, "text/html")
        if stream and kind.events is not None:
            return await self._sse(request, kind.events)
        return kind.answer()

    async def _sse(self, request: web.Request, events: list[str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"data: {event}\n\n".encode())
        await response.write_eof()
        return response


class BackgroundLoop:
    """An event loop on its own thread, for servers a blocking test talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T] | Awaitable[T], timeout: float = 30) -> T:
        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
