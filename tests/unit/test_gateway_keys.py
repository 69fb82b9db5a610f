"""A caller key's own rpm/tpm, acquired with the deployment's in one atomic reservation."""

from __future__ import annotations

import hashlib
import random

import pytest

from switchboard.app import build_gateway
from switchboard.config import Settings, parse_settings
from switchboard.domain import Caller, CompletionRequest, Message, Role, Sampling
from switchboard.errors import CapacityExhausted, NoDeploymentAvailable, UpstreamUnavailable
from switchboard.gateway import Gateway
from switchboard.limits.admission import caller_key, deployment_key
from tests.unit.fakes import FakeClock, ScriptedProvider

WINDOW = 60.0
ALPHA = Caller(name="alpha", limit_key="key:alpha")
BETA = Caller(name="beta")


def _settings(queue_wait: float = 0.0) -> Settings:
    digest = hashlib.sha256(b"unused").hexdigest()
    other = hashlib.sha256(b"other").hexdigest()
    text = f"""
model_list:
  - {{model_name: duo, litellm_params: {{model: openai/a, rpm: 100, tpm: 100000}},
      model_info: {{id: a}}}}
  - {{model_name: duo, litellm_params: {{model: openai/b, rpm: 100, tpm: 100000}},
      model_info: {{id: b}}}}
  - {{model_name: spare, litellm_params: {{model: openai/c, rpm: 100}}, model_info: {{id: c}}}}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 0
  max_queue_wait: {queue_wait}
  fallbacks: [{{duo: [spare]}}]
switchboard:
  limits: {{window_seconds: {WINDOW}, default_max_tokens: 100}}
  keys:
    - {{name: alpha, sha256: {digest}, rpm: 1, tpm: 150}}
    - {{name: beta, sha256: {other}}}
"""
    return parse_settings(text, source="test", env={})


def _gateway(provider: ScriptedProvider, clock: FakeClock, settings: Settings) -> Gateway:
    return build_gateway(
        settings, clock=clock, rng=random.Random(7), provider=provider, sleep=clock.sleep
    )


def _request(caller: Caller | None, max_tokens: int | None = None) -> CompletionRequest:
    return CompletionRequest(
        model="duo",
        messages=(Message(Role.USER, "hi"),),
        sampling=Sampling(max_tokens=max_tokens),
        caller=caller,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_the_key_limit_key_is_named_after_the_key() -> None:
    assert caller_key("alpha") == "key:alpha"


async def test_the_key_is_reserved_with_the_deployment_and_settled_with_it(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    await gateway.complete(_request(ALPHA), deadline=None)
    # Settled to the real usage (8 tokens) on the key as on the deployment.
    assert gateway.admission.headroom("key:alpha") == (0, 150 - 8)
    (used,) = {d for d, _ in provider.calls}
    assert gateway.admission.headroom(deployment_key(used)) == (99, 100000 - 8)
    assert gateway.admission.open_count == 0


async def test_a_spent_key_is_refused_while_the_deployments_have_room(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings())
    await gateway.complete(_request(ALPHA), deadline=None)
    clock.advance(10.0)
    asked: list[str] = []
    original = gateway.admission.try_reserve

    def spy(deployment, tokens, extra_keys=()):  # type: ignore[no-untyped-def]
        asked.append(deployment.id)
        return original(deployment, tokens, extra_keys)

    gateway.admission.try_reserve = spy  # type: ignore[method-assign]
    with pytest.raises(CapacityExhausted) as caught:
        await gateway.complete(_request(ALPHA), deadline=None)
    # The key refuses every deployment alike: the others and the fallback are not asked.
    assert len(asked) == 1
    err = caught.value
    assert err.limit_key == "key:alpha"
    assert err.info() == {"limit": "key:alpha"}
    assert err.retry_after == pytest.approx(50.0, abs=0.5)
    assert "key:alpha" in err.message
    assert len(provider.calls) == 1
    for deployment in ("a", "b", "c"):
        requests, _ = gateway.admission.headroom(deployment_key(deployment))
        assert requests is not None
        assert requests >= 99
    # Another caller on the same deployments is served.
    await gateway.complete(_request(BETA), deadline=None)
    await gateway.complete(_request(None), deadline=None)
    assert len(provider.calls) == 3
    assert gateway.admission.open_count == 0


async def test_a_spent_key_waits_for_its_own_window_when_the_queue_allows(
    clock: FakeClock,
) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings(queue_wait=120.0))
    await gateway.complete(_request(ALPHA), deadline=None)
    completion = await gateway.complete(_request(ALPHA), deadline=None)
    # One wait, the key's whole window: not one short wait per deployment.
    assert len(clock.slept) == 1
    assert clock.slept[0] == pytest.approx(WINDOW, abs=1.0)
    assert completion.route.queued_s == pytest.approx(WINDOW, abs=1.0)


async def test_a_call_larger_than_the_key_tpm_never_fits(clock: FakeClock) -> None:
    provider = ScriptedProvider(clock, latency=0.0)
    gateway = _gateway(provider, clock, _settings(queue_wait=120.0))
    with pytest.raises(CapacityExhausted) as caught:
        await gateway.complete(_request(ALPHA, max_tokens=500), deadline=None)
    assert caught.value.limit_key == "key:alpha"
    assert caught.value.retry_after is None
    assert clock.slept == []
    assert provider.calls == []


@pytest.mark.parametrize(
    ("groups", "served_by_fallback"),
    [
        (frozenset({"duo"}), False),
        (frozenset({"duo", "spare"}), True),
        (None, True),
    ],
)
async def test_a_caller_is_served_by_fallback_groups_it_may_use_only(
    groups: frozenset[str] | None, served_by_fallback: bool
) -> None:
    clock = FakeClock()
    provider = ScriptedProvider(clock)
    provider.failures = {d: [UpstreamUnavailable("down") for _ in range(4)] for d in "ab"}
    gateway = _gateway(provider, clock, _settings())
    caller = Caller(name="gamma", groups=groups)
    # Every attempt on duo fails.
    outcomes = []
    for _ in range(2):
        try:
            completion = await gateway.complete(_request(caller), deadline=None)
        except NoDeploymentAvailable:
            outcomes.append(None)
        else:
            outcomes.append(completion.route.model_group)
    if served_by_fallback:
        assert outcomes == ["spare", "spare"]
    else:
        assert outcomes == [None, None]
        assert "c" not in {call[0] for call in provider.calls}
