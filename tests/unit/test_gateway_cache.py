"""The exact response cache inside the gateway: scripted provider, fake clock, memory store."""

from __future__ import annotations

import contextlib
import dataclasses
import random

import pytest

from switchboard.app import build_gateway
from switchboard.config import Settings, parse_settings
from switchboard.domain import (
    CacheControl,
    CacheKind,
    Caller,
    CompletionRequest,
    FinishReason,
    Message,
    ProviderChunk,
    Role,
    Sampling,
    StreamDelta,
    StreamFinal,
    Tool,
    ToolCallDelta,
    Usage,
)
from switchboard.errors import NoDeploymentAvailable, UpstreamUnavailable
from switchboard.gateway import Gateway
from tests.unit.fakes import FakeClock, ScriptedProvider

CONFIG = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a, timeout: 30}, model_info: {id: a}}
router_settings: {num_retries: 0}
switchboard:
  aliases: {fast: chat}
  cache: {ttl_seconds: 60, scope: %s}
"""
WALL = 1_800_000_000.0


def _settings(scope: str = "key") -> Settings:
    return parse_settings(CONFIG % scope, source="test", env={})


def _gateway(provider: ScriptedProvider, clock: FakeClock, scope: str = "key") -> Gateway:
    return build_gateway(
        _settings(scope),
        clock=clock,
        rng=random.Random(1),
        provider=provider,
        sleep=clock.sleep,
        wall=lambda: WALL,
    )


def _request(text: str = "hi", **changes: object) -> CompletionRequest:
    request = CompletionRequest(model="chat", messages=(Message(Role.USER, text),))
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> ScriptedProvider:
    return ScriptedProvider(clock)


async def _collect(gateway: Gateway, request: CompletionRequest) -> list[StreamDelta | StreamFinal]:
    return [event async for event in gateway.stream(request, deadline=None)]


async def test_a_second_identical_call_is_a_hit_with_the_original_usage_and_no_cost(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    first = await gateway.complete(_request(), deadline=None)
    second = await gateway.complete(_request(), deadline=None)
    assert len(provider.calls) == 1
    assert not first.route.cache_hit
    assert first.route.cost_usd > 0
    assert second.route.cache_hit
    assert second.route.cost_usd == 0
    assert second.route.attempts == ()
    assert second.response.message.content == first.response.message.content
    assert second.response.usage == first.response.usage
    assert second.route.cache is not None
    assert second.route.cache.kind is CacheKind.EXACT
    assert second.route.cache.cost_saved_usd == pytest.approx(first.route.cost_usd)
    assert second.route.cache.created == WALL


async def test_an_alias_and_its_group_share_answers(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    await gateway.complete(_request(), deadline=None)
    hit = await gateway.complete(_request(model="fast"), deadline=None)
    assert hit.route.cache_hit
    assert len(provider.calls) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"sampling": Sampling(temperature=0.3)},
        {"sampling": Sampling(max_tokens=7)},
        {"tools": (Tool(name="lookup", parameters={"type": "object"}),)},
        {"tool_choice": "none"},
        {"cache": CacheControl(namespace="other")},
        {"messages": (Message(Role.USER, "hi!"),)},
        {"messages": (Message(Role.SYSTEM, "be brief"), Message(Role.USER, "hi"))},
    ],
    ids=["temperature", "max_tokens", "tool", "tool_choice", "namespace", "text", "context"],
)
async def test_a_changed_question_misses(
    clock: FakeClock, provider: ScriptedProvider, changes: dict[str, object]
) -> None:
    gateway = _gateway(provider, clock)
    await gateway.complete(_request(), deadline=None)
    other = await gateway.complete(_request(**changes), deadline=None)
    assert not other.route.cache_hit
    assert len(provider.calls) == 2


async def test_metadata_and_tags_are_not_part_of_the_question(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    await gateway.complete(_request(metadata={"trace": "1"}), deadline=None)
    hit = await gateway.complete(
        _request(metadata={"trace": "2"}, cache=CacheControl(tags=("doc-1",))), deadline=None
    )
    assert hit.route.cache_hit


async def test_entries_expire_after_their_ttl(clock: FakeClock, provider: ScriptedProvider) -> None:
    gateway = _gateway(provider, clock)
    await gateway.complete(_request(), deadline=None)
    await gateway.complete(_request("short", cache=CacheControl(ttl_seconds=5)), deadline=None)
    clock.advance(5.5)
    assert not (await gateway.complete(_request("short"), deadline=None)).route.cache_hit
    assert (await gateway.complete(_request(), deadline=None)).route.cache_hit
    clock.advance(60)
    assert not (await gateway.complete(_request(), deadline=None)).route.cache_hit


async def test_no_cache_skips_the_lookup_and_no_store_the_store(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    await gateway.complete(_request(cache=CacheControl(no_store=True)), deadline=None)
    assert not (await gateway.complete(_request(), deadline=None)).route.cache_hit
    fresh = await gateway.complete(_request(cache=CacheControl(no_cache=True)), deadline=None)
    assert not fresh.route.cache_hit
    assert len(provider.calls) == 3
    assert (await gateway.complete(_request(), deadline=None)).route.cache_hit


async def test_a_stream_is_replayed_with_the_same_text_in_the_same_order(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    provider.stream_script["a"] = [
        ProviderChunk(content="Once ", id="s1", model="m"),
        ProviderChunk(content="upon "),
        ProviderChunk(content="a time."),
        ProviderChunk(finish_reason=FinishReason.STOP, usage=Usage(4, 3)),
    ]
    gateway = _gateway(provider, clock)
    first = await _collect(gateway, _request())
    second = await _collect(gateway, _request())
    assert len(provider.calls) == 1
    deltas = [e.content for e in second if isinstance(e, StreamDelta)]
    assert deltas == [e.content for e in first if isinstance(e, StreamDelta)]
    assert deltas == ["Once ", "upon ", "a time."]
    final = second[-1]
    assert isinstance(final, StreamFinal)
    assert final.route.cache_hit
    assert final.route.cost_usd == 0
    assert final.usage == Usage(4, 3)
    # A Complete may answer from an entry a stream stored, and the other way round.
    whole = await gateway.complete(_request(), deadline=None)
    assert whole.route.cache_hit
    assert whole.response.message.content == "Once upon a time."
    await gateway.complete(_request("other"), deadline=None)
    replayed = await _collect(gateway, _request("other"))
    assert [e.content for e in replayed if isinstance(e, StreamDelta)] == ["hello from a"]
    assert len(provider.calls) == 2


async def test_streamed_tool_calls_are_stored_whole(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    provider.stream_script["a"] = [
        ProviderChunk(tool_calls=(ToolCallDelta(0, id="c1", name="get"),), id="s1", model="m"),
        ProviderChunk(tool_calls=(ToolCallDelta(0, arguments='{"q":'),)),
        ProviderChunk(tool_calls=(ToolCallDelta(0, arguments='"x"}'),)),
        ProviderChunk(finish_reason=FinishReason.TOOL_CALLS, usage=Usage(4, 3)),
    ]
    gateway = _gateway(provider, clock)
    await _collect(gateway, _request())
    hit = await gateway.complete(_request(), deadline=None)
    assert hit.route.cache_hit
    (call,) = hit.response.message.tool_calls
    assert (call.id, call.name, call.arguments) == ("c1", "get", '{"q":"x"}')
    assert hit.response.finish_reason is FinishReason.TOOL_CALLS


async def test_nothing_is_stored_from_a_failed_call(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    provider.failures["a"] = [UpstreamUnavailable("down")]
    gateway = _gateway(provider, clock)
    with pytest.raises(NoDeploymentAvailable):
        await gateway.complete(_request(), deadline=None)
    assert not (await gateway.complete(_request(), deadline=None)).route.cache_hit


async def test_nothing_is_stored_from_a_truncated_answer(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    provider.stream_script["a"] = [
        ProviderChunk(content="cut sho", id="s1", model="m"),
        ProviderChunk(finish_reason=FinishReason.LENGTH, usage=Usage(4, 3)),
    ]
    gateway = _gateway(provider, clock)
    await _collect(gateway, _request())
    assert not (await gateway.complete(_request(), deadline=None)).route.cache_hit


async def test_nothing_is_stored_from_a_stream_that_failed_part_way(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    provider.stream_script["a"] = [
        ProviderChunk(content="half", id="s1", model="m"),
        UpstreamUnavailable("connection reset"),
    ]
    gateway = _gateway(provider, clock)
    with pytest.raises(UpstreamUnavailable):
        await _collect(gateway, _request())
    provider.stream_script.clear()
    replay = await _collect(gateway, _request())
    final = replay[-1]
    assert isinstance(final, StreamFinal)
    assert not final.route.cache_hit


async def test_nothing_is_stored_from_a_stream_the_caller_left(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    events = gateway.stream(_request(), deadline=None)
    async with contextlib.aclosing(events):
        first = await anext(events)
        assert isinstance(first, StreamDelta)
    assert provider.streams[0].closed
    again = await _collect(gateway, _request())
    final = again[-1]
    assert isinstance(final, StreamFinal)
    assert not final.route.cache_hit


def _caller(name: str, team: str = "") -> Caller:
    return Caller(name=name, metadata={"team": team} if team else {})


async def test_two_keys_do_not_share_answers_under_the_default_scope(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    await gateway.complete(_request(caller=_caller("alice", "x")), deadline=None)
    other = await gateway.complete(_request(caller=_caller("bob", "x")), deadline=None)
    assert not other.route.cache_hit
    mine = await gateway.complete(_request(caller=_caller("alice", "x")), deadline=None)
    assert mine.route.cache_hit


@pytest.mark.parametrize(
    ("scope", "shared_with"),
    [("team", {"bob"}), ("global", {"bob", "carol", "dave"})],
)
async def test_operators_may_share_answers_by_team_or_globally(
    clock: FakeClock, provider: ScriptedProvider, scope: str, shared_with: set[str]
) -> None:
    gateway = _gateway(provider, clock, scope)
    callers = {
        "alice": _caller("alice", "x"),
        "bob": _caller("bob", "x"),
        "carol": _caller("carol", "y"),
        "dave": _caller("dave"),
    }
    await gateway.complete(_request(caller=callers["alice"]), deadline=None)
    hits = set()
    for name in ("bob", "carol", "dave"):
        answer = await gateway.complete(_request(caller=callers[name]), deadline=None)
        if answer.route.cache_hit:
            hits.add(name)
    assert hits == shared_with


async def test_invalidation_by_tag_and_by_namespace(
    clock: FakeClock, provider: ScriptedProvider
) -> None:
    gateway = _gateway(provider, clock)
    cache = gateway.cache
    assert cache is not None
    asked = [
        _request("a", cache=CacheControl(tags=("doc-1",))),
        _request("b", cache=CacheControl(tags=("doc-1", "doc-2"))),
        _request("c", cache=CacheControl(tags=("doc-2",))),
        _request("d", cache=CacheControl(namespace="kb", tags=("doc-1",))),
        _request("e", cache=CacheControl(namespace="kb")),
    ]
    for request in asked:
        await gateway.complete(request, deadline=None)
    assert await cache.invalidate(None, ("doc-1",)) == 3
    assert await cache.invalidate(None, ("doc-1",)) == 0
    assert await cache.invalidate("kb", ()) == 1
    still = [(await gateway.complete(r, deadline=None)).route.cache_hit for r in asked]
    assert still == [False, False, True, False, False]
