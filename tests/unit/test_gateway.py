"""The gateway's orchestration with a scripted provider, a fake clock and a seeded RNG."""

from __future__ import annotations

import random

import grpc
import pytest

from switchboard.app import build_gateway
from switchboard.config import Settings, parse_settings
from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    Outcome,
    ProviderChunk,
    Role,
    StreamDelta,
    StreamFinal,
    Usage,
)
from switchboard.errors import (
    ContextWindowExceeded,
    DeadlineExceeded,
    ModelNotFound,
    NoDeploymentAvailable,
    ProviderError,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from switchboard.gateway import Gateway
from tests.unit.fakes import FakeClock, ScriptedProvider

CONFIG = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a, timeout: 30}, model_info: {id: a}}
  - {model_name: chat, litellm_params: {model: openai/b, timeout: 30}, model_info: {id: b}}
  - {model_name: big, litellm_params: {model: openai/c, timeout: 30}, model_info: {id: c}}
  - {model_name: backup, litellm_params: {model: openai/d, timeout: 30}, model_info: {id: d}}
router_settings:
  num_retries: 1
  fallbacks: [{chat: [backup]}]
  context_window_fallbacks: [{chat: [big]}]
switchboard:
  aliases: {fast: chat}
"""


def _settings() -> Settings:
    return parse_settings(CONFIG, source="test", env={})


def _gateway(
    provider: ScriptedProvider, clock: FakeClock, settings: Settings | None = None
) -> Gateway:
    return build_gateway(
        settings or _settings(),
        clock=clock,
        rng=random.Random(1),
        provider=provider,
        sleep=clock.sleep,
    )


def _request(model: str = "chat") -> CompletionRequest:
    return CompletionRequest(model=model, messages=(Message(Role.USER, "hi"),))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_answer_carries_route_facts_and_cost(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    completion = await _gateway(provider, clock).complete(_request("fast"), deadline=None)
    assert completion.route.model_group == "chat"
    assert completion.route.deployment in {"a", "b"}
    assert completion.route.fallback_depth == 0
    assert completion.route.cost_usd == pytest.approx(0.008)
    (attempt,) = completion.route.attempts
    assert attempt.outcome is Outcome.SUCCESS
    assert attempt.latency_s == pytest.approx(0.25)


async def test_unknown_model_is_not_found(clock: FakeClock) -> None:
    with pytest.raises(ModelNotFound):
        await _gateway(ScriptedProvider(clock), clock).complete(_request("nope"), deadline=None)


async def test_retryable_failure_moves_to_the_other_deployment(clock: FakeClock) -> None:
    boom = UpstreamUnavailable("503")
    provider = ScriptedProvider(clock, failures={"a": [boom], "b": [UpstreamUnavailable("503")]})
    # Whichever is tried first fails; the other one then fails too; backup answers.
    completion = await _gateway(provider, clock).complete(_request(), deadline=None)
    assert [c for c, _ in provider.calls][:2] in (["a", "b"], ["b", "a"])
    assert completion.route.deployment == "d"
    assert completion.route.fallback_depth == 1
    outcomes = [a.outcome for a in completion.route.attempts]
    assert outcomes == [Outcome.UNAVAILABLE, Outcome.UNAVAILABLE, Outcome.SUCCESS]
    assert [a.deployment for a in completion.route.attempts] == [c for c, _ in provider.calls]


async def test_context_window_error_goes_to_the_context_window_fallback(clock: FakeClock) -> None:
    provider = ScriptedProvider(
        clock,
        failures={"a": [ContextWindowExceeded("too long")], "b": [ContextWindowExceeded("x")]},
    )
    completion = await _gateway(provider, clock).complete(_request(), deadline=None)
    assert completion.route.deployment == "c"
    assert completion.route.model_group == "big"
    assert len(provider.calls) == 2  # no second try inside `chat`


async def test_non_retryable_error_is_answered_at_once(clock: FakeClock) -> None:
    bad = UpstreamBadRequest("bad schema")
    provider = ScriptedProvider(clock, failures={"a": [bad], "b": [UpstreamBadRequest("x")]})
    with pytest.raises(UpstreamBadRequest):
        await _gateway(provider, clock).complete(_request(), deadline=None)
    assert len(provider.calls) == 1


async def test_everything_down_keeps_every_failure(clock: FakeClock) -> None:
    provider = ScriptedProvider(
        clock,
        failures={k: [UpstreamUnavailable(f"{k} down")] * 2 for k in "abd"},
    )
    with pytest.raises(NoDeploymentAvailable) as caught:
        await _gateway(provider, clock).complete(_request(), deadline=None)
    assert caught.value.status is grpc.StatusCode.UNAVAILABLE
    # num_retries 1: chat's two deployments once each, then backup's one twice.
    assert [f.deployment for f in caught.value.failures][2:] == ["d", "d"]
    assert len(caught.value.failures) == 4


async def test_every_candidate_rate_limited_is_resource_exhausted(clock: FakeClock) -> None:
    provider = ScriptedProvider(
        clock,
        failures={
            k: [UpstreamRateLimited("429", retry_after=s)]
            for k, s in zip("abd", (3, 2, 9), strict=True)
        },
    )
    with pytest.raises(NoDeploymentAvailable) as caught:
        await _gateway(provider, clock).complete(_request(), deadline=None)
    assert caught.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.retry_after == 2


async def test_attempt_timeout_is_bounded_by_the_deadline(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, failures={"a": [UpstreamUnavailable("x")]})
    provider.failures["b"] = [UpstreamUnavailable("y")]
    await _gateway(provider, clock).complete(_request(), deadline=clock.now + 10)
    timeouts = [t for _, t in provider.calls]
    assert timeouts == [pytest.approx(10), pytest.approx(9.75), pytest.approx(9.5)]


async def test_no_attempt_starts_after_the_deadline(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=2.0)
    provider.failures = {"a": [UpstreamUnavailable("x")], "b": [UpstreamUnavailable("y")]}
    with pytest.raises(DeadlineExceeded):
        await _gateway(provider, clock).complete(_request(), deadline=clock.now + 3)
    assert len(provider.calls) == 2


async def test_stream_yields_deltas_then_final(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    events = [e async for e in _gateway(provider, clock).stream(_request(), deadline=None)]
    assert [e.content for e in events if isinstance(e, StreamDelta)] == ["Hel", "lo"]
    final = events[-1]
    assert isinstance(final, StreamFinal)
    assert final.usage == Usage(input_tokens=4, output_tokens=2)
    assert final.finish_reason is FinishReason.STOP
    assert final.id == "s1"
    assert final.route.cost_usd == pytest.approx(0.006)
    assert provider.streams[0].closed


async def test_stream_falls_back_before_the_first_chunk(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    provider.stream_script = {"a": [UpstreamUnavailable("drop")], "b": [UpstreamUnavailable("x")]}
    events = [e async for e in _gateway(provider, clock).stream(_request(), deadline=None)]
    final = events[-1]
    assert isinstance(final, StreamFinal)
    assert final.route.deployment == "d"
    assert all(s.closed for s in provider.streams)


async def test_stream_error_after_the_first_chunk_ends_the_stream(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    broken: list[ProviderChunk | ProviderError] = [
        ProviderChunk(content="partial"),
        UpstreamUnavailable("dropped mid-stream"),
    ]
    provider.stream_script = {"a": broken, "b": list(broken)}
    received: list[object] = []

    async def consume() -> None:
        async for event in _gateway(provider, clock).stream(_request(), deadline=None):
            received.append(event)

    with pytest.raises(UpstreamUnavailable):
        await consume()
    assert received == [StreamDelta(content="partial")]
    assert len(provider.calls) == 1
    assert provider.streams[0].closed


async def test_closing_the_stream_early_closes_the_upstream(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    events = _gateway(provider, clock).stream(_request(), deadline=None)
    first = await anext(events)
    assert first == StreamDelta(content="Hel")
    await events.aclose()
    assert provider.streams[0].closed
