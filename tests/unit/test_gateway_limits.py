"""The limiter guarding every call: reserve, skip, queue, refuse, settle exactly once."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

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
    Sampling,
    StreamFinal,
    Usage,
)
from switchboard.errors import (
    CapacityExhausted,
    ContextWindowExceeded,
    NoDeploymentAvailable,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.gateway import Gateway
from switchboard.limits.admission import deployment_key
from switchboard.routing import HealthState
from tests.unit.fakes import FakeClock, ScriptedProvider

WINDOW = 60.0


def _settings(*, queue_wait: float = 5.0, extra: str = "") -> Settings:
    text = f"""
model_list:
  - {{model_name: solo, litellm_params: {{model: openai/s, rpm: 2, tpm: 1000}},
      model_info: {{id: s}}}}
  - {{model_name: pair, litellm_params: {{model: openai/p, rpm: 1, tpm: 1000, weight: 1}},
      model_info: {{id: p}}}}
  - {{model_name: pair, litellm_params: {{model: openai/q, rpm: 100, tpm: 1000, weight: 1}},
      model_info: {{id: q}}}}
  - {{model_name: small, litellm_params: {{model: openai/t, rpm: 1}}, model_info: {{id: t}}}}
  - {{model_name: spare, litellm_params: {{model: openai/u, rpm: 100}}, model_info: {{id: u}}}}
  - {{model_name: tiny, litellm_params: {{model: openai/v}},
      model_info: {{id: v, max_input_tokens: 10}}}}
  - {{model_name: roomy, litellm_params: {{model: openai/w}}, model_info: {{id: w}}}}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  max_queue_wait: {queue_wait}
  fallbacks: [{{small: [spare]}}]
  context_window_fallbacks: [{{tiny: [roomy]}}]
switchboard:
  limits: {{window_seconds: {WINDOW}, default_max_tokens: 100}}
{extra}
"""
    return parse_settings(text, source="test", env={})


def _gateway(provider: ScriptedProvider, clock: FakeClock, settings: Settings) -> Gateway:
    return build_gateway(
        settings, clock=clock, rng=random.Random(7), provider=provider, sleep=clock.sleep
    )


def _request(model: str, content: str = "hi", max_tokens: int | None = None) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=(Message(Role.USER, content),),
        sampling=Sampling(max_tokens=max_tokens),
    )


def _headroom(gateway: Gateway, deployment_id: str) -> tuple[int | None, int | None]:
    return gateway.admission.headroom(deployment_key(deployment_id))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_reservation_is_prompt_plus_max_tokens_then_corrected_to_usage(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock, usage=Usage(input_tokens=5, output_tokens=3))
    gateway = _gateway(provider, clock, _settings())
    seen: list[tuple[int | None, int | None]] = []
    original = provider.complete

    async def spy(deployment, request, *, timeout_s):  # type: ignore[no-untyped-def]
        seen.append(_headroom(gateway, deployment.id))
        return await original(deployment, request, timeout_s=timeout_s)

    provider.complete = spy  # type: ignore[method-assign]
    await gateway.complete(_request("solo", "hello", max_tokens=40), deadline=None)
    # During the call: prompt estimate (5 chars) + max_tokens 40 are held.
    assert seen == [(1, 1000 - 45)]
    # After it: the real usage (8 tokens) is what counts.
    assert _headroom(gateway, "s") == (1, 1000 - 8)
    assert gateway.admission.open_count == 0


async def test_default_max_tokens_is_reserved_when_the_request_sets_none(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock)
    gateway = _gateway(provider, clock, _settings())
    gateway.admission.configure(deployment_key("s"), 10, 101)
    # "hi" is 2 tokens for the fake estimator; 2 + 100 default > 101.
    with pytest.raises(CapacityExhausted) as caught:
        await gateway.complete(_request("solo"), deadline=None)
    assert caught.value.retry_after is None, "a call larger than the limit never fits"
    assert provider.calls == []


async def test_out_of_headroom_is_resource_exhausted_with_the_exact_wait(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    await gateway.complete(_request("solo"), deadline=None)
    clock.advance(10.0)
    await gateway.complete(_request("solo"), deadline=None)
    with pytest.raises(CapacityExhausted) as caught:
        await gateway.complete(_request("solo"), deadline=None)
    err = caught.value
    assert err.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.limit_key == "deployment:s"
    # The first request leaves the window 60 s after it was admitted: 50 s from now.
    assert err.retry_after == pytest.approx(50.0, abs=0.5)
    assert len(provider.calls) == 2, "the refused call never reached the provider"
    assert clock.slept == [], "a wait longer than max_queue_wait is not attempted"


async def test_a_wait_within_the_queue_bound_is_taken_then_served(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings(queue_wait=120.0))
    for _ in range(2):
        await gateway.complete(_request("solo"), deadline=None)
    completion = await gateway.complete(_request("solo"), deadline=None)
    assert clock.slept
    assert sum(clock.slept) == pytest.approx(WINDOW, abs=0.5)
    assert completion.route.queued_s == pytest.approx(sum(clock.slept))
    assert len(provider.calls) == 3


async def test_the_deadline_bounds_the_queue(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings(queue_wait=120.0))
    for _ in range(2):
        await gateway.complete(_request("solo"), deadline=None)
    with pytest.raises(CapacityExhausted):
        await gateway.complete(_request("solo"), deadline=clock.now + 30.0)
    assert clock.slept == []


async def test_a_deployment_without_headroom_is_skipped_not_attempted(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    served = [(await gateway.complete(_request("pair"), deadline=None)).route for _ in range(20)]
    # p admits one call per window; every other call went to q without a failed attempt.
    assert sum(r.deployment == "p" for r in served) == 1
    assert all(len(r.attempts) == 1 for r in served)
    # Refused by the limiter, p is still among the candidates the strategy weighed.
    assert all(r.candidates == ("p", "q") for r in served)


async def test_no_headroom_in_the_group_moves_to_its_fallback(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    first = await gateway.complete(_request("small"), deadline=None)
    second = await gateway.complete(_request("small"), deadline=None)
    assert (first.route.deployment, first.route.fallback_depth) == ("t", 0)
    assert (second.route.deployment, second.route.fallback_depth) == ("u", 1)


async def test_prompt_larger_than_the_context_window_skips_to_its_fallback(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock)
    gateway = _gateway(provider, clock, _settings())
    completion = await gateway.complete(_request("tiny", "x" * 50), deadline=None)
    assert completion.route.deployment == "w"
    assert [call[0] for call in provider.calls] == ["w"], "the small deployment was never called"


async def test_prompt_larger_than_every_window_without_fallback_is_refused(
    clock: FakeClock,
) -> None:
    settings = parse_settings(
        """
model_list:
  - {model_name: tiny, litellm_params: {model: openai/v}, model_info: {id: v, max_input_tokens: 10}}
""",
        source="test",
        env={},
    )
    provider = ScriptedProvider(clock)
    with pytest.raises(ContextWindowExceeded):
        await _gateway(provider, clock, settings).complete(
            _request("tiny", "x" * 50), deadline=None
        )
    assert provider.calls == []


async def _run_failures(gateway: Gateway, provider: ScriptedProvider) -> None:
    """Every way an attempt can end without an answer."""
    # `solo` is tried three times a call (num_retries 2).
    for failure in (UpstreamUnavailable("boom"), UpstreamTimeout("slow")):
        provider.failures["s"] = [failure] * 3
        with pytest.raises(Exception):  # noqa: B017, PT011 - any failure will do here
            await gateway.complete(_request("solo"), deadline=None)
    provider.failures["s"] = []
    provider.failures["q"] = [UpstreamBadRequest("bad")]
    provider.failures["p"] = [UpstreamBadRequest("bad")]
    with pytest.raises(UpstreamBadRequest):
        await gateway.complete(_request("pair"), deadline=None)


async def test_no_reservation_leaks_after_errors_timeouts_and_cancellations(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    await _run_failures(gateway, provider)
    # The timeouts were charged (the provider counted them): let their window pass.
    clock.advance(WINDOW)

    # A call cancelled while the provider is working on it.
    provider.hold["q"] = asyncio.Event()
    provider.hold["p"] = provider.hold["q"]
    task = asyncio.create_task(gateway.complete(_request("pair"), deadline=None))
    await provider.holding.wait()
    assert gateway.admission.open_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # A stream the caller leaves after one chunk, and one failing mid-stream.
    events = gateway.stream(_request("solo"), deadline=None)
    await anext(events)
    await events.aclose()
    clock.advance(WINDOW)
    provider.stream_script["s"] = [ProviderChunk(content="a"), UpstreamUnavailable("dropped")]
    with pytest.raises(UpstreamUnavailable):
        async for _ in gateway.stream(_request("solo"), deadline=None):
            pass

    assert gateway.admission.open_count == 0
    clock.advance(WINDOW + 1.0)
    for deployment_id, limits in {"s": (2, 1000), "p": (1, 1000), "q": (100, 1000)}.items():
        assert _headroom(gateway, deployment_id) == limits, deployment_id


async def test_a_stream_commits_its_reported_usage_at_the_end(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    gateway = _gateway(provider, clock, _settings())
    events = [event async for event in gateway.stream(_request("solo"), deadline=None)]
    assert len(events) == 3
    # The scripted stream reports 4 + 2 tokens on its last chunk.
    assert _headroom(gateway, "s") == (1, 1000 - 6)


async def test_a_stream_left_early_is_charged_what_was_delivered(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock)
    gateway = _gateway(provider, clock, _settings())
    events = gateway.stream(_request("solo", "hello"), deadline=None)
    await anext(events)
    await events.aclose()
    # Prompt estimate (5) plus the one delivered chunk, not the 105 reserved.
    assert _headroom(gateway, "s") == (1, 1000 - 6)


async def test_a_stream_without_usage_is_charged_a_token_per_upstream_piece(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock)
    gateway = _gateway(provider, clock, _settings())
    # Three upstream events merged into one chunk still count as three.
    provider.stream_script["s"] = [
        ProviderChunk(content="a b c", pieces=3),
        ProviderChunk(content="d"),
        ProviderChunk(finish_reason=FinishReason.STOP, pieces=0),
    ]
    events = [event async for event in gateway.stream(_request("solo", "hello"), deadline=None)]
    final = events[-1]
    assert isinstance(final, StreamFinal)
    assert final.usage.output_tokens == 4
    # Prompt estimate (5) plus the four pieces.
    assert _headroom(gateway, "s") == (1, 1000 - 9)


async def test_retry_after_cools_a_deployment_for_exactly_that_long(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    gateway.admission.configure(deployment_key("p"), None, None)
    provider.failures["p"] = [UpstreamRateLimited("slow down", retry_after=7.0)]
    provider.failures["q"] = []
    routes = []
    while provider.failures["p"]:
        routes.append((await gateway.complete(_request("pair"), deadline=None)).route)
    (deployment_p,) = [d for d in gateway.settings.groups["pair"] if d.id == "p"]
    status = gateway.status(deployment_p)
    assert status.health.state is HealthState.COOLING_DOWN
    assert status.health.until == pytest.approx(clock.now + 7.0)
    for _ in range(30):
        route = (await gateway.complete(_request("pair"), deadline=None)).route
        assert route.deployment == "q"
    clock.advance(7.0)
    assert gateway.status(deployment_p).health.state is HealthState.RAMPING


async def test_a_sole_deployment_paused_by_retry_after_is_waited_for(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    provider.failures["s"] = [UpstreamRateLimited("slow down", retry_after=2.0)]
    # A retry is left (num_retries 2) and the pause fits the queue bound: it is waited out.
    completion = await gateway.complete(_request("solo"), deadline=None)
    assert clock.slept == [pytest.approx(2.0)]
    assert completion.route.queued_s == pytest.approx(2.0)
    outcomes = [a.outcome for a in completion.route.attempts]
    assert outcomes == [Outcome.RATE_LIMITED, Outcome.SUCCESS]
    # Without retries, the caller hears of the pause at once.
    settings = _settings()
    no_retries = replace(settings, router=replace(settings.router, num_retries=0))
    gateway = _gateway(provider, clock, no_retries)
    provider.failures["s"] = [UpstreamRateLimited("slow down", retry_after=2.0)]
    with pytest.raises(NoDeploymentAvailable) as caught:
        await gateway.complete(_request("solo"), deadline=None)
    assert caught.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.retry_after == 2.0
