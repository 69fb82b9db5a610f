"""How one attempt ends: retries, exact accounting on timeouts and cancels, stream bounds.

The provider is scripted and the clock fake, except for the stream bounds,
which are asyncio timeouts on the loop's own clock (tens of milliseconds
against a provider that never answers: nothing else can end those calls).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest

from switchboard.app import build_gateway
from switchboard.config import Deployment, Settings, parse_settings
from switchboard.domain import (
    CompletionRequest,
    Message,
    Outcome,
    ProviderChunk,
    Role,
    StreamDelta,
)
from switchboard.errors import (
    CapacityExhausted,
    NoDeploymentAvailable,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.gateway import BASE_BACKOFF_S, Gateway
from switchboard.limits.admission import deployment_key
from switchboard.routing import HealthState
from tests.unit.fakes import FakeClock, ScriptedProvider, ScriptedStream

WINDOW = 60.0


def _settings(extra_routing: str = "") -> Settings:
    text = f"""
model_list:
  - {{model_name: solo, litellm_params: {{model: openai/s, rpm: 2, tpm: 1000}},
      model_info: {{id: s}}}}
  - {{model_name: pair, litellm_params: {{model: openai/a, stream_timeout: 0.05}},
      model_info: {{id: a}}}}
  - {{model_name: pair, litellm_params: {{model: openai/b}}, model_info: {{id: b}}}}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  max_queue_wait: 5
switchboard:
  limits: {{window_seconds: {WINDOW}, default_max_tokens: 100}}
  routing: {{max_cooldown_seconds: 30 {extra_routing}}}
"""
    return parse_settings(text, source="test", env={})


@dataclass
class StallingProvider(ScriptedProvider):
    """Streams that stop answering after `stall_after[deployment]` chunks, until closed."""

    stall_after: dict[str, int] = field(default_factory=dict)

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ScriptedStream:
        stream = await super().stream(deployment, request, timeout_s=timeout_s)
        limit = self.stall_after.get(deployment.id)
        if limit is not None:
            stream.chunks = stream.chunks[:limit]
            stream.__class__ = _Stalling
        return stream


class _Stalling(ScriptedStream):
    async def _run(self) -> AsyncIterator[ProviderChunk]:
        for item in self.chunks:
            assert isinstance(item, ProviderChunk)
            yield item
        await asyncio.Event().wait()  # never set: only a timeout or a close ends this


def _gateway(provider: ScriptedProvider, clock: FakeClock, settings: Settings) -> Gateway:
    return build_gateway(
        settings, clock=clock, rng=random.Random(3), provider=provider, sleep=clock.sleep
    )


def _request(model: str, content: str = "hi") -> CompletionRequest:
    return CompletionRequest(model=model, messages=(Message(Role.USER, content),))


def _headroom(gateway: Gateway, deployment_id: str) -> tuple[int | None, int | None]:
    return gateway.admission.headroom(deployment_key(deployment_id))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_a_group_of_one_is_retried_with_growing_jittered_backoff(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    provider.failures["s"] = [UpstreamUnavailable("503"), UpstreamUnavailable("503")]
    completion = await _gateway(provider, clock, _settings()).complete(
        _request("solo"), deadline=None
    )
    assert [c for c, _ in provider.calls] == ["s", "s", "s"]
    first, second = clock.slept
    assert BASE_BACKOFF_S * 0.5 <= first < BASE_BACKOFF_S
    assert BASE_BACKOFF_S <= second < 2 * BASE_BACKOFF_S
    outcomes = [a.outcome for a in completion.route.attempts]
    assert outcomes == [Outcome.UNAVAILABLE, Outcome.UNAVAILABLE, Outcome.SUCCESS]


async def test_no_retry_when_its_backoff_does_not_fit_the_deadline(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    provider.failures["s"] = [UpstreamUnavailable("503")]
    gateway = _gateway(provider, clock, _settings())
    with pytest.raises(NoDeploymentAvailable):
        await gateway.complete(_request("solo"), deadline=clock() + 0.1)
    assert len(provider.calls) == 1
    assert clock.slept == []


async def test_timeouts_after_sending_are_charged_so_short_deadlines_cannot_beat_rpm(
    clock: FakeClock,
) -> None:
    settings = _settings()
    settings = replace(settings, router=replace(settings.router, num_retries=0))
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, settings)
    provider.failures["s"] = [UpstreamTimeout("slow")] * 5
    for _ in range(2):
        with pytest.raises(NoDeploymentAvailable):
            await gateway.complete(_request("solo", "hello"), deadline=None)
    # rpm 2: both were counted (with their prompts), the third is refused before any call.
    assert _headroom(gateway, "s") == (0, 1000 - 2 * 5)
    with pytest.raises(CapacityExhausted):
        await gateway.complete(_request("solo"), deadline=None)
    assert len(provider.calls) == 2
    assert gateway.admission.open_count == 0


async def test_a_refusal_from_the_provider_gives_the_reservation_back(clock: FakeClock) -> None:
    settings = _settings()
    settings = replace(settings, router=replace(settings.router, num_retries=0))
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, settings)
    provider.failures["s"] = [UpstreamUnavailable("503")]
    with pytest.raises(NoDeploymentAvailable):
        await gateway.complete(_request("solo"), deadline=None)
    assert _headroom(gateway, "s") == (2, 1000)


async def test_a_cancel_while_the_provider_works_charges_the_request_and_prompt(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    provider.hold["s"] = asyncio.Event()
    task = asyncio.create_task(gateway.complete(_request("solo", "hello"), deadline=None))
    await provider.holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gateway.admission.open_count == 0
    assert _headroom(gateway, "s") == (1, 1000 - 5)


async def test_no_first_chunk_within_stream_timeout_falls_back(clock: FakeClock) -> None:
    provider = StallingProvider(clock, latency=0.0, stall_after={"a": 0})
    gateway = _gateway(provider, clock, _settings())
    seen: list[str] = []
    # simple-shuffle picks either first; a stalled `a` must hand over to `b`.
    for _ in range(4):
        events = [e async for e in gateway.stream(_request("pair"), deadline=None)]
        final = events[-1]
        assert final.route.deployment == "b"  # type: ignore[union-attr]
        seen += [a.deployment for a in final.route.attempts]  # type: ignore[union-attr]
    assert "a" in seen
    assert all(s.closed for s in provider.streams)
    assert gateway.admission.open_count == 0


async def test_a_stream_that_goes_quiet_ends_with_a_timeout_and_is_charged_what_it_sent(
    clock: FakeClock,
) -> None:
    settings = _settings(", stream_idle_seconds: 0.05")
    provider = StallingProvider(clock, latency=0.0, stall_after={"s": 1})
    gateway = _gateway(provider, clock, settings)
    received: list[str] = []

    async def drain() -> None:
        async for event in gateway.stream(_request("solo", "hello"), deadline=None):
            assert isinstance(event, StreamDelta)
            received.append(event.content)

    with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.05s"):
        await drain()
    assert received == ["Hel"]
    assert provider.streams[0].closed
    assert gateway.admission.open_count == 0
    # The prompt (5) and the one piece delivered.
    assert _headroom(gateway, "s") == (1, 1000 - 6)


async def test_a_provider_cooldown_is_capped_by_max_cooldown_seconds(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    provider.failures["a"] = [UpstreamRateLimited("slow down", retry_after=1e9)]
    provider.failures["b"] = []
    while provider.failures["a"]:
        await gateway.complete(_request("pair"), deadline=None)
    (deployment_a,) = [d for d in gateway.settings.groups["pair"] if d.id == "a"]
    health = gateway.status(deployment_a).health
    assert health.state is HealthState.COOLING_DOWN
    assert health.until == pytest.approx(clock.now + 30.0)
