"""The pooled-HTTP fast path: its SSE decoding, its wire body, its errors, and parity with litellm.

Parity is checked against the real thing: the same request goes through
`LitellmProvider` and `OpenAIHttpProvider` to one loopback server (a body
recorder, or the simulator with a fault profile), and the two must send the
same body and produce the same domain values and the same error classes.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web

from switchboard import errors
from switchboard.config import Deployment
from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    ProviderChunk,
    Role,
    Sampling,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from switchboard.providers.litellm_adapter import LitellmProvider
from switchboard.providers.openai_http import MAX_SSE_LINE_BYTES, OpenAIHttpProvider, PoolLimits
from switchboard.providers.openai_wire import (
    MalformedAnswer,
    error_body,
    merge_chunks,
    parse_chunk,
    parse_response,
)
from switchboard.providers.openai_wire import status_error as wire_status_error
from switchboard.providers.router import ProviderRouter
from switchboard.providers.sse import DONE, SseDecoder
from switchboard.sim import FaultRates, SimProfile, SimServer, builtin_profiles

SAY_HI = CompletionRequest(model="g", messages=(Message(Role.USER, "Say hi"),))
RICH = CompletionRequest(
    model="g",
    messages=(
        Message(Role.SYSTEM, "be brief"),
        Message(Role.USER, "hi", name="bob"),
        Message(Role.ASSISTANT, "", tool_calls=(ToolCall("c1", "lookup", '{"q":"x"}'),)),
        Message(Role.TOOL, "found", tool_call_id="c1"),
    ),
    sampling=Sampling(
        max_tokens=7,
        temperature=0.5,
        top_p=0.9,
        stop=("END",),
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    ),
    tools=(
        Tool("lookup", "find things", {"type": "object", "properties": {"q": {"type": "string"}}}),
        Tool("bare"),
    ),
    tool_choice="lookup",
)


def _clock() -> float:
    return 0.0


def status_error(
    status: int, body: bytes, headers: dict[str, str], deployment_id: str, clock: Any
) -> errors.ProviderError:
    """The table applied to an error answer's body, as the fast path reads it."""
    message, code = error_body(body)
    return wire_status_error(status, message, code, headers, deployment_id, clock)


def deployment(api_base: str, model: str = "openai/instant", **params: Any) -> Deployment:
    return Deployment(
        id="dep",
        model_group="g",
        model=model,
        provider=model.split("/", 1)[0] if "/" in model else "openai",
        params={"api_base": api_base, "api_key": "sk-test", **params},
        rpm=None,
        tpm=None,
        timeout_s=10.0,
        stream_timeout_s=10.0,
        weight=None,
        max_input_tokens=None,
        max_output_tokens=None,
        input_cost_per_token=None,
        output_cost_per_token=None,
    )


@pytest.fixture
def litellm_provider() -> LitellmProvider:
    return LitellmProvider(wall_clock=_clock)


@pytest.fixture
async def fast(litellm_provider: LitellmProvider) -> AsyncIterator[OpenAIHttpProvider]:
    provider = OpenAIHttpProvider(
        fallback_price=litellm_provider.price,
        estimate=litellm_provider.estimate_prompt_tokens,
        wall_clock=_clock,
    )
    yield provider
    await provider.aclose()


# ---------------------------------------------------------------- SSE


def test_sse_decoder_yields_data_when_a_blank_line_ends_the_event() -> None:
    decoder = SseDecoder()
    fed = [decoder.feed(line) for line in ['data: {"a":1}', "", ": keep-alive", "", "data:x"]]
    assert fed == [None, '{"a":1}', None, None, None]
    assert decoder.flush() == "x"
    assert decoder.flush() is None


def test_sse_decoder_joins_multiline_data_and_skips_other_fields() -> None:
    decoder = SseDecoder()
    for line in ["event: message", "id: 7", "retry: 10", "data: one", "data:  two", "nodata"]:
        assert decoder.feed(line) is None
    assert decoder.feed("") == "one\n two"
    assert decoder.feed("data: [DONE]") is None
    assert decoder.feed("") == DONE


def test_parse_chunk_skips_empty_deltas_and_keeps_usage_tool_calls_and_finish() -> None:
    assert parse_chunk({"id": "c", "choices": [{"delta": {"role": "assistant"}}]}) is None
    tool = parse_chunk(
        {
            "id": "c",
            "model": "m",
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 1, "id": "t", "function": {"name": "f", "arguments": "{"}}
                        ]
                    },
                    "finish_reason": None,
                }
            ],
        }
    )
    assert tool is not None
    assert tool.tool_calls[0].index == 1
    assert (tool.tool_calls[0].name, tool.tool_calls[0].arguments) == ("f", "{")
    last = parse_chunk(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 3},
            },
        }
    )
    assert last == ProviderChunk(usage=Usage(5, 2, 3))
    done = parse_chunk({"choices": [{"delta": {}, "finish_reason": "length"}]})
    assert done is not None
    assert done.finish_reason is FinishReason.LENGTH


# ---------------------------------------------------------------- the wire body


@dataclass
class Recorder:
    """A loopback upstream that records each request and answers as told."""

    status: int = 400
    body: dict[str, Any] = field(
        default_factory=lambda: {"error": {"message": "recorded", "type": "x", "code": None}}
    )
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    # When set, the answer's bytes as they are, instead of `body` as JSON.
    raw_body: bytes | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path_qs, dict(request.headers), await request.json()))
        if self.raw_body is not None:
            return web.Response(body=self.raw_body, status=self.status, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    async with serving(rec) as base:
        yield rec, base


async def _fail(call: Callable[[], Any]) -> errors.ProviderError:
    with pytest.raises(errors.ProviderError) as caught:
        await call()
    return caught.value


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("request_", [SAY_HI, RICH], ids=["plain", "tools-and-sampling"])
async def test_the_fast_path_sends_the_body_litellm_sends(
    recorder: tuple[Recorder, str],
    litellm_provider: LitellmProvider,
    fast: OpenAIHttpProvider,
    stream: bool,
    request_: CompletionRequest,
) -> None:
    rec, base = recorder
    dep = deployment(base, "openai/gpt-x")
    for provider in (litellm_provider, fast):
        call = provider.stream if stream else provider.complete
        await _fail(lambda call=call: call(dep, request_, timeout_s=5))  # type: ignore[misc]
    (path_l, headers_l, body_l), (path_f, headers_f, body_f) = rec.seen
    assert body_f == body_l
    assert body_f["model"] == "gpt-x"
    assert ("stream_options" in body_f) is stream
    assert path_f == path_l == "/v1/chat/completions"
    assert headers_f["Authorization"] == headers_l["Authorization"] == "Bearer sk-test"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (429, {"message": "slow down", "code": "rate_limit_exceeded"}, errors.UpstreamRateLimited),
        (401, {"message": "bad key", "code": "invalid_api_key"}, errors.UpstreamAuthError),
        (403, {"message": "forbidden"}, errors.UpstreamAuthError),
        (404, {"message": "no such model", "code": "model_not_found"}, errors.UpstreamNotFound),
        (400, {"message": "bad", "code": None}, errors.UpstreamBadRequest),
        (422, {"message": "unprocessable"}, errors.UpstreamBadRequest),
        (
            400,
            {"message": "too long", "code": "context_length_exceeded"},
            errors.ContextWindowExceeded,
        ),
        (
            400,
            {"message": "This model's maximum context length is 4096 tokens."},
            errors.ContextWindowExceeded,
        ),
        (
            400,
            {"message": "rejected", "code": "content_policy_violation"},
            errors.ContentPolicyViolation,
        ),
        (408, {"message": "request timeout"}, errors.UpstreamTimeout),
        (504, {"message": "gateway timeout"}, errors.UpstreamTimeout),
        (500, {"message": "oops"}, errors.UpstreamUnavailable),
        (502, {"message": "bad gateway"}, errors.UpstreamUnavailable),
        (503, {"message": "overloaded"}, errors.UpstreamUnavailable),
        (409, {"message": "conflict"}, errors.UpstreamInternal),
    ],
)
def test_status_error_maps_every_status_and_code(
    status: int, error: dict[str, Any], expected: type[errors.ProviderError]
) -> None:
    body = json.dumps({"error": {"type": "t", "param": None, **error}}).encode()
    mapped = status_error(status, body, {}, "dep", _clock)
    assert type(mapped) is expected
    # Our description: the deployment, the status and the code, never the provider's words.
    assert mapped.message.startswith(
        (
            "deployment dep ",
            "rate limited by deployment dep ",
            "the prompt exceeds the context window of deployment dep ",
        )
    )
    assert f"(HTTP {status}" in mapped.message
    assert error["message"] not in mapped.message
    if error.get("code"):
        assert mapped.message.endswith(f", {error['code']})")
        assert mapped.info()["upstream_code"] == error["code"]
    assert mapped.info()["http_status"] == str(status)
    assert mapped.upstream_detail == error["message"]
    assert mapped.deployment == "dep"


def test_status_error_keeps_the_first_line_and_reads_retry_after() -> None:
    body = json.dumps({"error": {"message": "first line\nsecond line" + "x" * 600}}).encode()
    mapped = status_error(429, body, {"Retry-After-Ms": "2500"}, "dep", _clock)
    assert mapped.message == "rate limited by deployment dep (HTTP 429)"
    assert mapped.upstream_detail == "first line"
    assert mapped.retry_after == 2.5
    long = status_error(500, b"x" * 900, {}, "dep", _clock)
    assert long.message == "deployment dep is unavailable (HTTP 500)"
    assert long.upstream_detail == "x" * 299 + "…"  # redact.MAX_DETAIL_CHARS
    empty = status_error(502, b"", {}, "dep", _clock)
    assert (empty.message, empty.upstream_detail) == (
        "deployment dep is unavailable (HTTP 502)",
        "",
    )
    dated = status_error(429, b"{}", {"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"}, "d", _clock)
    assert dated.retry_after == 30.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504])
async def test_every_status_maps_as_litellm_maps_it(
    recorder: tuple[Recorder, str],
    litellm_provider: LitellmProvider,
    fast: OpenAIHttpProvider,
    status: int,
) -> None:
    rec, base = recorder
    rec.status = status
    rec.headers = {"retry-after-ms": "1500"}
    rec.body = {"error": {"message": f"upstream says {status}", "type": "t", "code": None}}
    dep = deployment(base)
    via_litellm = await _fail(lambda: litellm_provider.complete(dep, SAY_HI, timeout_s=5))
    via_fast = await _fail(lambda: fast.complete(dep, SAY_HI, timeout_s=5))
    # One table (openai_wire.status_error) maps both: a 403, which litellm leaves
    # a generic APIError, is UpstreamAuthError on both paths.
    assert type(via_fast) is type(via_litellm), (via_fast, via_litellm)
    assert via_litellm.message == via_fast.message
    assert f"(HTTP {status})" in via_fast.message
    assert via_fast.retry_after == via_litellm.retry_after
    assert via_fast.upstream_detail == f"upstream says {status}"
    assert via_litellm.upstream_detail.endswith(via_fast.upstream_detail)
    assert "upstream says" not in via_fast.message + via_litellm.message


# ---------------------------------------------------------------- parity on the simulator

FAULTS: dict[str, dict[str, Any]] = {
    "rate_limit": {"rate_limit": 1.0, "retry_after_s": 2.5},
    "server_error": {"server_error": 1.0},
    "unavailable": {"unavailable": 1.0},
    "connection_reset": {"connection_reset": 1.0},
    "mid_stream_drop": {"mid_stream_drop": 1.0, "drop_after_chunks": 3},
    "context_window": {"context_window": 1.0},
    "content_policy": {"content_policy": 1.0},
    "authentication": {"authentication": 1.0},
    "timeout": {"timeout": 1.0, "hang_s": 30},
}
# A status error keeps the provider's words, which litellm wraps in its banner.
WORDED = {"rate_limit", "server_error", "unavailable", "context_window", "content_policy",
          "authentication"}  # fmt: skip


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    profiles = builtin_profiles()
    for name, faults in FAULTS.items():
        profiles[name] = SimProfile(faults=FaultRates(**faults))
    profiles["budget"] = SimProfile(rpm_budget=1000)
    profiles["slow"] = SimProfile(
        tokens_per_second=20, min_output_tokens=200, max_output_tokens=200
    )
    async with SimServer(profiles, default_profile="instant", rng=random.Random(1)) as server:
        yield server


async def _drain(stream: Any) -> list[ProviderChunk]:
    return [chunk async for chunk in stream]


def _folded(chunks: list[ProviderChunk]) -> list[ProviderChunk]:
    """`chunks` merged wherever they may be: what a stream says, however it was read."""
    out: list[ProviderChunk] = []
    for chunk in chunks:
        merged = merge_chunks(out[-1], chunk) if out else None
        if merged is None:
            out.append(chunk)
        else:
            out[-1] = merged
    return [replace(c, id="") for c in out]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_each_simulated_fault_is_the_same_error_on_both_paths(
    sim: SimServer,
    litellm_provider: LitellmProvider,
    fast: OpenAIHttpProvider,
    fault: str,
    stream: bool,
) -> None:
    dep = deployment(sim.base_url, f"openai/{fault}")
    timeout_s = 0.3 if fault == "timeout" else 10.0
    found: list[errors.ProviderError] = []
    for provider in (litellm_provider, fast):
        if stream:

            async def call(provider: Any = provider) -> None:
                await _drain(await provider.stream(dep, SAY_HI, timeout_s=timeout_s))

        else:

            async def call(provider: Any = provider) -> None:
                await provider.complete(dep, SAY_HI, timeout_s=timeout_s)

        found.append(await _fail(call))
    via_litellm, via_fast = found
    assert type(via_fast) is type(via_litellm), (via_fast.message, via_litellm.message)
    assert via_fast.retry_after == via_litellm.retry_after
    assert via_fast.deployment == "dep"
    assert "\n" not in via_fast.message
    if fault in WORDED:
        # Both describe the failure in our words, alike; the provider's go to the log only.
        assert via_litellm.message == via_fast.message
        assert via_litellm.upstream_detail.endswith(via_fast.upstream_detail)


@pytest.mark.parametrize("request_", [SAY_HI, RICH], ids=["plain", "tools-and-sampling"])
async def test_answers_are_the_same_on_both_paths(
    sim: SimServer,
    litellm_provider: LitellmProvider,
    fast: OpenAIHttpProvider,
    request_: CompletionRequest,
) -> None:
    seeded = replace(request_, sampling=replace(request_.sampling, seed=11))
    dep = deployment(sim.base_url, "openai/budget")
    via_litellm = await litellm_provider.complete(dep, seeded, timeout_s=10)
    via_fast = await fast.complete(dep, seeded, timeout_s=10)
    assert replace(via_fast, id="", rate_limit=None) == replace(via_litellm, id="", rate_limit=None)
    # The same x-ratelimit-* headers, one request further into the simulator's budget
    # (whose reset counts down on the simulator's clock).
    hint_litellm, hint_fast = via_litellm.rate_limit, via_fast.rate_limit
    assert hint_litellm is not None
    assert hint_fast is not None
    assert hint_litellm.requests_remaining is not None
    assert hint_fast.requests_remaining == hint_litellm.requests_remaining - 1
    assert hint_fast.requests_reset_s == pytest.approx(hint_litellm.requests_reset_s, abs=1)
    chunks_litellm = await _drain(await litellm_provider.stream(dep, seeded, timeout_s=10))
    chunks_fast = await _drain(await fast.stream(dep, seeded, timeout_s=10))
    assert _folded(chunks_fast) == _folded(chunks_litellm)
    assert chunks_fast[-1].usage is not None


async def test_aclose_closes_the_upstream_connection_at_once(
    sim: SimServer, fast: OpenAIHttpProvider
) -> None:
    stream = await fast.stream(deployment(sim.base_url, "openai/slow"), SAY_HI, timeout_s=10)
    chunks = aiter(stream)
    await anext(chunks)
    await stream.aclose()
    async with asyncio.timeout(0.1):
        await sim.stats.wait_for_disconnects(1)


@dataclass
class PeerRecorder(Recorder):
    """Answers a fixed chat completion (or stream) and remembers each caller's port."""

    peers: list[int] = field(default_factory=list)
    sse: bytes = b""

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if peer else -1)
        body = await request.json()
        if body.get("stream"):
            return web.Response(body=self.sse, content_type="text/event-stream")
        return web.json_response(self.body, status=self.status, headers=self.headers)


@asynccontextmanager
async def serving(rec: Recorder) -> AsyncIterator[str]:
    """`rec` on a loopback port; yields its OpenAI base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


ANSWER = {
    "id": "c",
    "model": "m",
    "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


async def test_sequential_calls_share_one_pooled_connection(fast: OpenAIHttpProvider) -> None:
    rec = PeerRecorder(status=200, body=ANSWER, sse=CONTENT + FINISH + b"data: [DONE]\n\n")
    async with serving(rec) as base:
        dep = deployment(base)
        for _ in range(5):
            await fast.complete(dep, SAY_HI, timeout_s=10)
            await _drain(await fast.stream(dep, SAY_HI, timeout_s=10))
    # Each answer read to its end returns the connection to the pool: one for all ten.
    assert len(rec.peers) == 10
    assert len(set(rec.peers)) == 1


async def test_concurrent_calls_open_connections_and_keep_them(fast: OpenAIHttpProvider) -> None:
    rec = PeerRecorder(status=200, body=ANSWER)
    async with serving(rec) as base:
        dep = deployment(base)
        for _ in range(2):
            await asyncio.gather(*(fast.complete(dep, SAY_HI, timeout_s=10) for _ in range(8)))
    # The second burst reuses the first burst's connections instead of opening more.
    assert len(rec.peers) == 16
    assert len(set(rec.peers)) <= 8


# ---------------------------------------------------------------- stream endings


CONTENT = b'data: {"id":"c","choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
ERROR_EVENT = b'data: {"error":{"message":"boom","code":null}}\n\n'
FINISH = b'data: {"id":"c","choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        # The first text leaves before the rest of its read: the finish follows on its own.
        (CONTENT + FINISH + b"data: [DONE]\n\n", [("hi", None), ("", FinishReason.STOP)]),
        (CONTENT + FINISH, [("hi", None), ("", FinishReason.STOP)]),  # no [DONE], but finished
        # After the first text, the events of one read leave merged.
        (CONTENT + CONTENT + FINISH, [("hi", None), ("hi", FinishReason.STOP)]),
        (CONTENT + b"data: [DONE]", [("hi", None)]),  # [DONE] without its blank line
        (CONTENT, errors.UpstreamUnavailable),  # dropped before finishing
        (CONTENT + ERROR_EVENT, errors.UpstreamUnavailable),
        (CONTENT + b"data: {nope\n\n", errors.UpstreamUnavailable),
    ],
    ids=[
        "done",
        "finish-only",
        "first-alone",
        "done-unterminated",
        "dropped",
        "error-event",
        "not-json",
    ],
)
async def test_how_a_stream_ends(fast: OpenAIHttpProvider, body: bytes, outcome: Any) -> None:
    async with serving(PeerRecorder(status=200, sse=body)) as base:
        stream = await fast.stream(deployment(base), SAY_HI, timeout_s=5)
        if isinstance(outcome, list):
            chunks = await _drain(stream)
            seen = [(c.content, c.finish_reason) for c in chunks]
            assert seen == outcome
        else:
            with pytest.raises(outcome):
                await _drain(stream)


def test_merge_chunks_joins_text_and_keeps_tool_calls_and_endings_apart() -> None:
    hi, there = ProviderChunk("hi", id="c", model="m"), ProviderChunk(" there")
    finish = ProviderChunk(finish_reason=FinishReason.STOP)
    usage = ProviderChunk(usage=Usage(3, 2))
    tool = ProviderChunk(tool_calls=(ToolCallDelta(0, "t1", "lookup", "{}"),))

    text = merge_chunks(hi, there)
    assert text == ProviderChunk("hi there", id="c", model="m", pieces=2)
    ended = merge_chunks(merge_chunks(text, finish) or hi, usage)
    assert ended == ProviderChunk(
        "hi there", id="c", model="m", finish_reason=FinishReason.STOP, usage=Usage(3, 2), pieces=2
    )
    assert merge_chunks(hi, tool) is None
    assert merge_chunks(tool, hi) is None
    assert merge_chunks(finish, hi) is None  # no text after the end
    assert merge_chunks(finish, finish) is None
    assert merge_chunks(usage, hi) is None  # nothing after usage
    assert merge_chunks(finish, usage) == ProviderChunk(
        finish_reason=FinishReason.STOP, usage=Usage(3, 2), pieces=0
    )


async def test_events_that_arrive_together_leave_as_one_chunk() -> None:
    """What is buffered is merged; what has not arrived is not waited for."""
    gate = asyncio.Event()

    class Staged(Recorder):
        async def handle(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(CONTENT)
            await gate.wait()
            usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n'
            await response.write(CONTENT + CONTENT + FINISH + usage + b"data: [DONE]\n\n")
            await response.write_eof()
            return response

    provider = OpenAIHttpProvider(
        fallback_price=lambda _d, _u: None, estimate=lambda _r: 1, wall_clock=_clock
    )
    try:
        async with serving(Staged()) as base:
            stream = await provider.stream(deployment(base), SAY_HI, timeout_s=5)
            chunks = aiter(stream)
            first = await anext(chunks)
            assert (first.content, first.finish_reason, first.pieces) == ("hi", None, 1)
            gate.set()
            rest = [chunk async for chunk in chunks]
    finally:
        await provider.aclose()
    assert rest == [
        ProviderChunk("hihi", id="c", finish_reason=FinishReason.STOP, usage=Usage(3, 3), pieces=2)
    ]


async def test_text_before_an_error_event_is_delivered_first(fast: OpenAIHttpProvider) -> None:
    async with serving(PeerRecorder(status=200, sse=CONTENT + CONTENT + ERROR_EVENT)) as base:
        stream = await fast.stream(deployment(base), SAY_HI, timeout_s=5)
        seen: list[str] = []

        async def collect() -> None:
            async for chunk in stream:
                seen.append(chunk.content)

        with pytest.raises(errors.UpstreamUnavailable):
            await collect()
    # The first text leaves at once; the second, before the error that ends the stream.
    assert seen == ["hi", "hi"]


async def test_a_stream_line_past_the_bound_is_refused(fast: OpenAIHttpProvider) -> None:
    endless = b"data: " + b"x" * (MAX_SSE_LINE_BYTES + 1024)
    async with serving(PeerRecorder(status=200, sse=endless)) as base:
        stream = await fast.stream(deployment(base), SAY_HI, timeout_s=5)
        with pytest.raises(errors.UpstreamUnavailable, match=r"malformed answer .*line over"):
            await _drain(stream)


async def test_a_connection_refused_is_unavailable(fast: OpenAIHttpProvider) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    dep = deployment(f"http://127.0.0.1:{port}/v1")
    for call in (fast.complete, fast.stream):
        with pytest.raises(errors.UpstreamUnavailable, match="connection refused"):
            await call(dep, SAY_HI, timeout_s=5)


# ---------------------------------------------------------------- routing and prices


def test_pool_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        PoolLimits(max_connections=0)
    with pytest.raises(ValueError, match="keepalive_expiry_s"):
        PoolLimits(keepalive_expiry_s=0)


async def test_the_router_sends_only_plain_openai_deployments_to_the_fast_path(
    litellm_provider: LitellmProvider, fast: OpenAIHttpProvider
) -> None:
    router = ProviderRouter(fast=fast, general=litellm_provider)
    base = "http://127.0.0.1:9/v1"
    assert router.provider_for(deployment(base)) is fast
    assert router.provider_for(deployment(base, "gpt-4o-mini")) is fast  # no prefix: openai
    assert router.provider_for(deployment(base, "azure/gpt-4o", api_version="x")) is (
        litellm_provider
    )
    assert router.provider_for(deployment(base, "groq/llama")) is litellm_provider
    assert router.provider_for(deployment(base, organization="org-1")) is litellm_provider
    keyless = replace(deployment(base), params={"api_base": base})
    assert router.provider_for(keyless) is litellm_provider
    assert router.estimate_prompt_tokens(SAY_HI) == litellm_provider.estimate_prompt_tokens(SAY_HI)


async def test_prices_come_from_the_config_else_from_the_injected_fallback() -> None:
    asked: list[str] = []

    def fallback(dep: Deployment, usage: Usage) -> float:
        asked.append(dep.id)
        return 0.5

    provider = OpenAIHttpProvider(fallback_price=fallback, estimate=lambda r: 0)
    try:
        priced = replace(
            deployment("http://x/v1"), input_cost_per_token=0.001, output_cost_per_token=0.002
        )
        assert provider.price(priced, Usage(10, 5)) == pytest.approx(0.02)
        assert asked == []
        assert provider.price(deployment("http://x/v1"), Usage(10, 5)) == 0.5
        assert asked == ["dep"]
    finally:
        await provider.aclose()


# ---------------------------------------------------------------- malformed answers

GOOD = {
    "id": "c",
    "model": "m",
    "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "text",
        {**GOOD, "choices": []},
        {k: v for k, v in GOOD.items() if k != "choices"},
        {**GOOD, "choices": "all of them"},
        {**GOOD, "choices": [5]},
        {**GOOD, "choices": [{"finish_reason": "stop"}]},
        {**GOOD, "choices": [{"message": {"content": 42}}]},
        {**GOOD, "choices": [{"message": {"content": "hi", "tool_calls": "one"}}]},
        {**GOOD, "choices": [{"message": {"tool_calls": [{"function": {"arguments": 3}}]}}]},
        {**GOOD, "choices": [{"message": {"content": "hi"}, "finish_reason": ["stop"]}]},
        {**GOOD, "usage": "lots"},
        {**GOOD, "usage": {"prompt_tokens": float("inf")}},
        {**GOOD, "usage": {"prompt_tokens": float("nan")}},
        {**GOOD, "usage": {"prompt_tokens": -3}},
        {**GOOD, "usage": {"prompt_tokens": 2**63}},
        {**GOOD, "usage": {"prompt_tokens": 1.5}},
        {**GOOD, "usage": {"prompt_tokens": "12"}},
        {**GOOD, "usage": {"prompt_tokens": True}},
        {**GOOD, "usage": {"prompt_tokens_details": {"cached_tokens": -1}}},
        {**GOOD, "id": 7},
    ],
)
def test_a_malformed_answer_is_refused_by_the_parser(answer: Any) -> None:
    with pytest.raises(MalformedAnswer):
        parse_response(answer, None)


def test_a_good_answer_is_read_and_its_labels_bounded() -> None:
    response = parse_response({**GOOD, "id": "x" * 10_000, "usage": {"prompt_tokens": 3.0}}, None)
    assert response.message.content == "hi"
    assert response.usage == Usage(3, 0)
    assert len(response.id) == 256


@pytest.mark.parametrize(
    "event",
    [
        {"choices": [{"delta": {"content": 42}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": -1}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 10**30}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]},
        {"choices": {"delta": {}}},
        {"usage": {"completion_tokens": 1e400}},
        [1, 2],
    ],
)
def test_a_malformed_event_is_refused_by_the_parser(event: Any) -> None:
    with pytest.raises(MalformedAnswer):
        parse_chunk(event)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"choices": [',
        b"[" * 100_000,
        json.dumps({**GOOD, "choices": []}).encode(),
        json.dumps(GOOD).replace('"prompt_tokens": 3', '"prompt_tokens": 1e400').encode(),
    ],
    ids=["empty", "html", "truncated", "deep", "no-choices", "usage-1e400"],
)
async def test_a_malformed_answer_is_retryable_unavailable_on_both_paths(
    recorder: tuple[Recorder, str],
    litellm_provider: LitellmProvider,
    fast: OpenAIHttpProvider,
    body: bytes,
) -> None:
    rec, base = recorder
    rec.status = 200
    rec.raw_body = body
    dep = deployment(base)
    for provider in (fast, litellm_provider):
        failure = await _fail(lambda p=provider: p.complete(dep, SAY_HI, timeout_s=5))
        assert type(failure) is errors.UpstreamUnavailable, (provider, failure)
        assert failure.retryable
        assert failure.message.startswith("deployment dep sent a malformed answer (")


@pytest.mark.parametrize(
    "sse",
    [
        b"",
        b"data: [DONE]\n\n",
        FINISH + b"data: [DONE]\n\n",
        b'data: {"choices":[]}\n\ndata: [DONE]\n\n',
        b"<html>oops</html>",
    ],
    ids=["nothing", "done-only", "finish-only", "no-choices", "html"],
)
async def test_a_stream_without_an_answer_is_unavailable_before_any_chunk(
    fast: OpenAIHttpProvider, sse: bytes
) -> None:
    async with serving(PeerRecorder(status=200, sse=sse)) as base:
        stream = await fast.stream(deployment(base), SAY_HI, timeout_s=5)
        chunks: list[ProviderChunk] = []

        async def collect() -> None:
            async for chunk in stream:
                chunks.append(chunk)

        with pytest.raises(errors.UpstreamUnavailable):
            await collect()
    assert chunks == []


async def test_unreadable_usage_after_the_text_keeps_the_text(fast: OpenAIHttpProvider) -> None:
    late_usage = b'data: {"choices":[],"usage":{"prompt_tokens":-3}}\n\n'
    async with serving(PeerRecorder(status=200, sse=CONTENT + FINISH + late_usage)) as base:
        stream = await fast.stream(deployment(base), SAY_HI, timeout_s=5)
        chunks = await _drain(stream)
    assert "".join(c.content for c in chunks) == "hi"
    assert all(c.usage is None for c in chunks)
