"""The simulator over real loopback HTTP, seen by aiohttp, OpenAI's client and litellm.

No sleeps synchronise these tests: they await the simulator's own stats (requests
in flight, disconnects) and use an injected clock and sleep where time matters.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam

import switchboard.sim
from switchboard.sim import FaultRates, LatencyShift, SimProfile, SimServer, builtin_profiles
from switchboard.sim.chat import ChatMessage
from switchboard.sim.tokens import count_prompt_tokens, count_text_tokens

pytestmark = pytest.mark.integration

PROMPT = "Say something short about routers."
MESSAGES = [{"role": "user", "content": PROMPT}]
PROMPT_TOKENS = count_prompt_tokens([ChatMessage(role="user", content=PROMPT)])
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
PROMPT_DISCONNECT_S = 0.1
"""How soon the simulator must notice a client that went away."""


class FakeClock:
    def __init__(self, start: float = 5000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """Stands in for asyncio.sleep: records the delays the simulator asks for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_profiles() -> dict[str, SimProfile]:
    return {
        **builtin_profiles(),
        "paced": SimProfile(tokens_per_second=100.0, min_output_tokens=60, max_output_tokens=60),
        "waiting": SimProfile(ttft_ms=60_000.0),
        "windowed": SimProfile(max_context_tokens=40),
        "always-500": SimProfile(faults=FaultRates(server_error=1.0)),
        "patient-429": SimProfile(faults=FaultRates(retry_after_s=2.5)),
        "dropping": SimProfile(
            min_output_tokens=10, max_output_tokens=10, faults=FaultRates(drop_after_chunks=4)
        ),
    }


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(
        make_profiles(),
        default_profile="instant",
        rng=random.Random(1234),
        allow_fault_headers=True,
    )
    async with server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as oai:
        yield oai


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "instant", "messages": MESSAGES, **fields}


async def post_json(
    http: aiohttp.ClientSession,
    sim: SimServer,
    body: object,
    headers: dict[str, str] | None = None,
    client_timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(
        f"{sim.base_url}/chat/completions", json=body, headers=headers, timeout=client_timeout
    ) as resp:
        return resp.status, await resp.json(), resp


async def read_events(resp: aiohttp.ClientResponse, events: list[str] | None = None) -> list[str]:
    """The `data:` payloads of an SSE response, in order (into `events` if given)."""
    events = [] if events is None else events
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            events.append(line[len("data: ") :])
        else:
            assert line == "", line
    return events


# -- the happy path, three clients ---------------------------------------------------


async def test_non_streamed_completion_is_openai_shaped(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    status, body, resp = await post_json(http, sim, chat_body())
    assert status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["x-request-id"].startswith("req_")
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "instant"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == PROMPT_TOKENS
    assert usage["completion_tokens"] == count_text_tokens(content)
    assert 20 <= usage["completion_tokens"] <= 60
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_max_tokens_caps_the_answer(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, body, _ = await post_json(http, sim, chat_body(max_tokens=5))
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    _, body, _ = await post_json(http, sim, chat_body(max_completion_tokens=3))
    assert body["usage"]["completion_tokens"] == 3


async def test_a_seed_reproduces_the_answer(sim: SimServer, http: aiohttp.ClientSession) -> None:
    answers = [
        (await post_json(http, sim, chat_body(seed=seed)))[1]["choices"][0]["message"]["content"]
        for seed in (42, 42, 43)
    ]
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


async def test_stop_sequences_end_the_answer(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, full, _ = await post_json(http, sim, chat_body(seed=5))
    words = full["choices"][0]["message"]["content"].split()
    stop = " " + words[4]
    _, stopped, _ = await post_json(http, sim, chat_body(seed=5, stop=[stop]))
    content = stopped["choices"][0]["message"]["content"]
    assert stop not in content
    assert full["choices"][0]["message"]["content"].startswith(content)
    assert stopped["choices"][0]["finish_reason"] == "stop"


async def test_stream_is_openai_sse(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    async with http.post(f"{sim.base_url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        events = await read_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *content_chunks, finish, usage_chunk = chunks[1:]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["delta"] == {}
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in content_chunks)
    assert len(content_chunks) == usage["completion_tokens"] == count_text_tokens(text)
    assert usage["prompt_tokens"] == PROMPT_TOKENS
    assert len(chunks) == usage["completion_tokens"] + 3


async def test_stream_without_include_usage_has_no_usage(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{sim.base_url}/chat/completions", json=chat_body(stream=True, max_tokens=4)
    ) as resp:
        events = await read_events(resp)
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) == 4 + 2
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_openai_client_non_stream(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": PROMPT}], seed=1
    )
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == count_text_tokens(
        completion.choices[0].message.content
    )


async def test_openai_client_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=8,
    )
    pieces: list[str] = []
    finish_reasons: list[str] = []
    usages = []
    async for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    assert len(pieces) == 8
    assert finish_reasons == ["length"]
    (usage,) = usages
    assert usage.completion_tokens == 8
    assert usage.prompt_tokens == PROMPT_TOKENS


async def test_litellm_non_stream_and_stream(sim: SimServer) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    response = await litellm.acompletion(
        model="openai/fast",
        api_base=sim.base_url,
        api_key="sim",
        messages=MESSAGES,
        max_retries=0,
    )
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == PROMPT_TOKENS

    stream = await litellm.acompletion(
        model="openai/fast",
        api_base=sim.base_url,
        api_key="sim",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=6,
        max_retries=0,
    )
    pieces: list[str] = []
    usage = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if getattr(chunk, "usage", None) is not None:
            usage = chunk.usage
    assert len(pieces) == 6
    assert usage is not None
    assert usage.completion_tokens == 6
    assert sim.stats.statuses[200] == 2


# -- routing by model, errors of the wire -------------------------------------------


@pytest.mark.parametrize(
    ("model", "profile"),
    [("fast", "fast"), ("sim-medium", "medium"), ("gpt-4o", "instant")],
)
async def test_the_model_picks_the_profile(
    sim: SimServer, http: aiohttp.ClientSession, model: str, profile: str
) -> None:
    status, body, resp = await post_json(http, sim, chat_body(model=model, max_tokens=1))
    assert status == 200
    assert resp.headers["x-sim-profile"] == profile
    assert body["model"] == model


async def test_the_path_without_v1_works_too(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.url}/chat/completions", json=chat_body()) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (json.dumps({"model": "instant"}).encode(), "messages"),
        (json.dumps(chat_body(n=9)).encode(), "n"),
        (json.dumps(chat_body(max_tokens="ten")).encode(), "max_tokens"),
    ],
)
async def test_bad_bodies_get_openai_400s(
    sim: SimServer, http: aiohttp.ClientSession, raw: bytes, param: str | None
) -> None:
    async with http.post(
        f"{sim.base_url}/chat/completions",
        data=raw,
        headers={"content-type": "application/json"},
    ) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert body["error"]["message"]
    assert sim.stats.statuses[400] == 1


async def test_unknown_paths_get_openai_404s(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/completions", json={}) as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["error"]["message"] == "Invalid URL (POST /v1/completions)"
    async with http.get(f"{sim.base_url}/chat/completions") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_models_and_stats_endpoints(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.base_url}/models") as resp:
        models = {model["id"] for model in (await resp.json())["data"]}
    assert models == set(make_profiles())
    await post_json(http, sim, chat_body())
    await post_json(http, sim, chat_body(), headers={"x-sim-fault": "server_error"})
    async with http.get(f"{sim.url}/sim/stats") as resp:
        stats = await resp.json()
    assert stats["requests"] == 2
    assert stats["completed"] == 2
    assert stats["in_flight"] == 0
    assert stats["disconnects"] == 0
    assert stats["faults"] == {"server_error": 1}
    assert stats["statuses"] == {"200": 1, "500": 1}
    assert stats["prompt_tokens"] == PROMPT_TOKENS


# -- tool calls ---------------------------------------------------------------------


async def test_required_tool_choice_returns_a_tool_call(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="instant",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city"}
    assert isinstance(arguments["city"], str)


async def test_named_tool_choice_streams_argument_fragments(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="instant",
        messages=[{"role": "user", "content": "time?"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        stream=True,
    )
    names: list[str] = []
    fragments: list[str] = []
    finish: list[str] = []
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    fragments.append(call.function.arguments)
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert names == ["get_time"]
    assert len(fragments) > 1
    assert set(json.loads("".join(fragments))) == {"zone"}
    assert finish == ["tool_calls"]


async def test_auto_tool_choice_answers_with_text(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, body, _ = await post_json(http, sim, chat_body(tools=[WEATHER_TOOL]))
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"]


# -- faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "code"),
    [
        ("rate_limit", 429, "requests", "rate_limit_exceeded"),
        ("server_error", 500, "server_error", None),
        ("unavailable", 503, "server_error", None),
        ("context_window", 400, "invalid_request_error", "context_length_exceeded"),
        ("content_policy", 400, "invalid_request_error", "content_policy_violation"),
    ],
)
async def test_error_faults_answer_like_openai(
    sim: SimServer,
    http: aiohttp.ClientSession,
    fault: str,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    got, body, _ = await post_json(http, sim, chat_body(), headers={"x-sim-fault": fault})
    assert got == status
    assert body["error"]["type"] == error_type
    assert body["error"]["code"] == code
    assert sim.stats.faults[fault] == 1


async def test_rate_limit_fault_says_when_to_retry(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, _, resp = await post_json(http, sim, chat_body(), headers={"x-sim-fault": "rate_limit"})
    assert resp.headers["retry-after"] == "1"
    assert resp.headers["retry-after-ms"] == "1000"
    _, body, resp = await post_json(
        http, sim, chat_body(model="patient-429"), headers={"x-sim-fault": "rate_limit"}
    )
    assert resp.headers["retry-after"] == "3"
    assert resp.headers["retry-after-ms"] == "2500"
    assert "Please try again in 2.5s" in body["error"]["message"]


async def test_context_window_fault_uses_openais_wording(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, body, _ = await post_json(http, sim, chat_body(), headers={"x-sim-fault": "context_window"})
    assert body["error"]["message"].startswith(
        "This model's maximum context length is 8192 tokens. However, your messages resulted in"
    )
    assert body["error"]["param"] == "messages"


async def test_a_prompt_longer_than_the_window_is_rejected(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    long_prompt = " ".join(["word"] * 60)
    tokens = count_prompt_tokens([ChatMessage(role="user", content=long_prompt)])
    status, body, _ = await post_json(
        http,
        sim,
        {"model": "windowed", "messages": [{"role": "user", "content": long_prompt}]},
    )
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["message"] == (
        f"This model's maximum context length is 40 tokens. However, your messages resulted "
        f"in {tokens} tokens. Please reduce the length of the messages."
    )
    # The window is a real limit, not an injected fault: "none" does not lift it.
    status, _, _ = await post_json(
        http,
        sim,
        {"model": "windowed", "messages": [{"role": "user", "content": long_prompt}]},
        headers={"x-sim-fault": "none"},
    )
    assert status == 400
    status, body, _ = await post_json(
        http, sim, {"model": "windowed", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    assert body["usage"]["total_tokens"] <= 40


async def test_profile_rates_inject_faults_without_headers(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        status, _, _ = await post_json(http, sim, chat_body(model="always-500"))
        assert status == 500
    assert sim.stats.faults["server_error"] == 3
    status, _, _ = await post_json(
        http, sim, chat_body(model="always-500"), headers={"x-sim-fault": "none"}
    )
    assert status == 200


async def test_fault_headers_are_ignored_unless_allowed(http: aiohttp.ClientSession) -> None:
    async with SimServer(default_profile="instant", rng=random.Random(0)) as plain:
        status, _, _ = await post_json(
            http, plain, chat_body(), headers={"x-sim-fault": "unavailable"}
        )
    assert status == 200


async def test_an_unknown_fault_header_is_a_400(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post_json(http, sim, chat_body(), headers={"x-sim-fault": "gremlins"})
    assert status == 400
    assert "gremlins" in body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_reset_is_a_client_connection_error(
    sim: SimServer, http: aiohttp.ClientSession, stream: bool
) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_json(
            http, sim, chat_body(stream=stream), headers={"x-sim-fault": "connection_reset"}
        )
    assert sim.stats.faults["connection_reset"] == 1
    assert sim.stats.disconnects == 0  # the simulator hung up, not the client
    assert sim.stats.completed == 0


async def test_connection_reset_through_openai_client(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(
            model="instant",
            messages=[{"role": "user", "content": PROMPT}],
            extra_headers={"x-sim-fault": "connection_reset"},
        )


async def test_mid_stream_drop_leaves_the_stream_incomplete(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    events: list[str] = []
    async with http.post(
        f"{sim.base_url}/chat/completions",
        json=chat_body(model="dropping", stream=True),
        headers={"x-sim-fault": "mid_stream_drop"},
    ) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_events(resp, events)
    assert len(events) == 4  # the profile's drop_after_chunks
    assert all("[DONE]" not in event for event in events)
    assert sim.stats.faults["mid_stream_drop"] == 1
    assert sim.stats.completed == 0
    assert sim.stats.disconnects == 0


async def test_mid_stream_drop_through_openai_client(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="instant",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers={"x-sim-fault": "mid_stream_drop"},
    )
    received: list[object] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIConnectionError):
        await consume()
    assert len(received) == 3  # FaultRates' default drop_after_chunks


async def test_mid_stream_drop_without_streaming_truncates_the_body(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        await post_json(http, sim, chat_body(), headers={"x-sim-fault": "mid_stream_drop"})


async def test_timeout_fault_hangs_until_the_client_gives_up(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(TimeoutError):
        await post_json(
            http,
            sim,
            chat_body(),
            headers={"x-sim-fault": "timeout"},
            client_timeout=aiohttp.ClientTimeout(total=0.2),
        )
    async with asyncio.timeout(1):
        await sim.stats.wait_for_disconnects(1)
    assert sim.stats.faults["timeout"] == 1
    assert sim.stats.completed == 0


async def test_timeout_fault_through_openai_client(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2).chat.completions.create(
            model="instant",
            messages=[{"role": "user", "content": PROMPT}],
            extra_headers={"x-sim-fault": "timeout"},
        )


async def test_tpm_budget_answers_429_with_the_exact_wait(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    metered = SimProfile(tpm_budget=100, min_output_tokens=20, max_output_tokens=20)
    per_request = count_prompt_tokens([ChatMessage(role="user", content="hi")]) + 20
    assert per_request == 28
    body = {"model": "metered", "messages": [{"role": "user", "content": "hi"}]}
    async with SimServer({"metered": metered}, default_profile="metered", clock=clock) as sim:
        for _ in range(3):  # 84 of 100 tokens, at t0, t0+1, t0+2
            status, _, resp = await post_json(http, sim, body)
            assert status == 200
            clock.advance(1)
        assert resp.headers["x-ratelimit-remaining-tokens"] == "16"
        clock.advance(7)  # t0 + 10: 28 more needs the spend at t0 gone, at t0 + 60
        status, error, resp = await post_json(http, sim, body)
        assert status == 429
        assert resp.headers["retry-after"] == "50"
        assert resp.headers["retry-after-ms"] == "50000"
        assert error["error"]["code"] == "rate_limit_exceeded"
        assert error["error"]["type"] == "tokens"
        assert "Limit 100, Used 84, Requested 28" in error["error"]["message"]
        clock.advance(49.999)
        status, _, resp = await post_json(http, sim, body)
        assert status == 429
        assert resp.headers["retry-after-ms"] == "1"
        clock.advance(0.001)
        status, _, _ = await post_json(http, sim, body)
        assert status == 200
        assert sim.stats.faults["tpm_budget"] == 2


# -- timing -------------------------------------------------------------------------


async def test_latency_schedule_shifts_time_to_first_token(http: aiohttp.ClientSession) -> None:
    clock, sleep = FakeClock(), RecordingSleep()
    shifting = SimProfile(
        ttft_ms=100.0,
        tokens_per_second=50.0,
        min_output_tokens=5,
        max_output_tokens=5,
        latency_schedule=(LatencyShift(at_s=30.0, ttft_factor=5.0, tps_factor=2.0),),
    )
    async with SimServer(
        {"shifting": shifting}, default_profile="shifting", clock=clock, sleep=sleep
    ) as sim:
        body = {"model": "shifting", "messages": MESSAGES, "stream": True}
        async with http.post(f"{sim.base_url}/chat/completions", json=body) as resp:
            await read_events(resp)
        assert sleep.delays == pytest.approx([0.1, 0.02, 0.02, 0.02, 0.02])
        sleep.delays.clear()
        clock.advance(30.0)
        async with http.post(f"{sim.base_url}/chat/completions", json=body) as resp:
            await read_events(resp)
        assert sleep.delays == pytest.approx([0.5, 0.01, 0.01, 0.01, 0.01])
        sleep.delays.clear()
        status, _, _ = await post_json(http, sim, {**body, "stream": False})
        assert status == 200
        assert sleep.delays == pytest.approx([0.5 + 4 * 0.01])


async def test_profiles_really_take_their_time(sim: SimServer, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    await post_json(http, sim, chat_body(model="medium", max_tokens=1))
    # medium: 120 ms ± 30 ms to the first (and only) token.
    assert time.monotonic() - started >= 0.09


# -- disconnects and lifecycle ------------------------------------------------------


async def test_a_client_leaving_mid_stream_is_noticed_at_once(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    resp = await http.post(
        f"{sim.base_url}/chat/completions", json=chat_body(model="paced", stream=True)
    )
    for _ in range(3):
        assert (await resp.content.readline()).startswith(b"data: ")
        assert await resp.content.readline() == b"\n"
    closed_at = time.monotonic()
    resp.close()
    async with asyncio.timeout(1):
        await sim.stats.wait_for_disconnects(1)
    assert sim.stats.disconnected.is_set()
    assert sim.stats.disconnect_times[0] - closed_at < PROMPT_DISCONNECT_S
    async with asyncio.timeout(1):
        await sim.stats.wait_idle()
    assert sim.stats.completed == 0


async def test_a_client_leaving_before_the_first_token_is_noticed_at_once(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    request = asyncio.create_task(post_json(http, sim, chat_body(model="waiting")))
    async with asyncio.timeout(1):
        await sim.stats.wait_for(lambda stats: stats.in_flight == 1)
    closed_at = time.monotonic()
    request.cancel()
    async with asyncio.timeout(1):
        await sim.stats.wait_for_disconnects(1)
    assert sim.stats.disconnect_times[0] - closed_at < PROMPT_DISCONNECT_S
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_stop_cancels_hanging_requests_promptly(http: aiohttp.ClientSession) -> None:
    sim = SimServer(make_profiles(), default_profile="waiting")
    await sim.start()
    request = asyncio.create_task(post_json(http, sim, chat_body(model="waiting")))
    async with asyncio.timeout(1):
        await sim.stats.wait_for(lambda stats: stats.in_flight == 1)
    async with asyncio.timeout(2):
        await sim.stop()
    with pytest.raises(aiohttp.ClientError):
        await request
    assert sim.stats.disconnects == 0
    assert sim.stats.in_flight == 0


async def test_many_concurrent_requests(sim: SimServer, http: aiohttp.ClientSession) -> None:
    statuses = await asyncio.gather(
        *(post_json(http, sim, chat_body(seed=index)) for index in range(50))
    )
    assert [status for status, _, _ in statuses] == [200] * 50
    assert sim.stats.completed == 50
    assert sim.stats.in_flight == 0


# -- the command-line entry point ---------------------------------------------------


SERVER_DIR = Path(switchboard.sim.__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment with this checkout's package importable by a child Python."""
    path = os.pathsep.join(filter(None, [str(SERVER_DIR), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


async def start_cli(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Run `python -m switchboard.sim` and return it with the base URL it announced."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.sim",
        *args,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    assert process.stderr is not None
    async with asyncio.timeout(20):
        line = (await process.stderr.readline()).decode()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, line
    return process, match.group(1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_cli_serves_until_signalled(
    http: aiohttp.ClientSession, tmp_path: Path, signum: signal.Signals
) -> None:
    profiles_file = tmp_path / "profiles.yaml"
    profiles_file.write_text("custom:\n  min_output_tokens: 2\n  max_output_tokens: 2\n")
    process, base_url = await start_cli(
        "--listen",
        "127.0.0.1:0",
        "--profile",
        "instant",
        "--profiles-file",
        str(profiles_file),
        "--allow-fault-headers",
    )
    try:
        async with http.post(
            f"{base_url}/chat/completions", json={"model": "custom", "messages": MESSAGES}
        ) as resp:
            assert resp.headers["x-sim-profile"] == "custom"
            assert (await resp.json())["usage"]["completion_tokens"] == 2
        async with http.post(
            f"{base_url}/chat/completions", json={"model": "other", "messages": MESSAGES}
        ) as resp:
            assert resp.headers["x-sim-profile"] == "instant"
        async with http.post(
            f"{base_url}/chat/completions",
            json={"model": "other", "messages": MESSAGES},
            headers={"x-sim-fault": "unavailable"},
        ) as resp:
            assert resp.status == 503
        process.send_signal(signum)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_rejects_an_unknown_profile() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.sim",
        "--listen",
        "127.0.0.1:0",
        "--profile",
        "nope",
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    async with asyncio.timeout(20):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"'nope'" in stderr
