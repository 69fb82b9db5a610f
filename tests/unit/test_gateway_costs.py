"""Cost control in the gateway: prices, spend by key/team/group/deployment, budgets, aliases."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from switchboard.accounting import Dimension, Period
from switchboard.app import build_gateway
from switchboard.config import Deployment, Settings, parse_settings
from switchboard.domain import (
    Caller,
    CompletionRequest,
    FormatKind,
    Message,
    ResponseFormat,
    Role,
    Sampling,
    StreamFinal,
    Usage,
)
from switchboard.errors import AllCoolingDown, BudgetExceeded, InvalidOutput
from switchboard.gateway import Gateway
from switchboard.providers.base import configured_price
from tests.unit.fakes import FakeClock, ScriptedProvider

IN_PRICE, OUT_PRICE = 0.000002, 0.00001
ALICE = Caller(name="alice", metadata={"team": "search"})
BOB = Caller(name="bob", metadata={"team": "search"})
CAROL = Caller(name="carol", metadata={"team": "ads"})


class PricedProvider(ScriptedProvider):
    """The scripted provider, priced as the real adapters price: the config's own prices."""

    def price(self, deployment: Deployment, usage: Usage) -> float:
        return configured_price(deployment, usage) or 0.0


def _settings(budgets: str = "", providers: str = "") -> Settings:
    keys = "\n".join(
        f"    - {{name: {name}, sha256: {hashlib.sha256(name.encode()).hexdigest()}, "
        f"metadata: {{team: {team}}}{budget}}}"
        for name, team, budget in (
            ("alice", "search", budgets),
            ("bob", "search", ""),
            ("carol", "ads", ""),
        )
    )
    text = f"""
model_list:
  - model_name: mini
    litellm_params: {{model: openai/mini, input_cost_per_token: {IN_PRICE},
                     output_cost_per_token: {OUT_PRICE}}}
    model_info: {{id: mini-a}}
  - model_name: pro
    litellm_params: {{model: openai/pro, input_cost_per_token: 0.00001,
                     output_cost_per_token: 0.00003}}
    model_info: {{id: pro-openai}}
  - model_name: pro
    litellm_params: {{model: anthropic/pro, input_cost_per_token: 0.00001,
                     output_cost_per_token: 0.00003}}
    model_info: {{id: pro-anthropic}}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 0
  max_queue_wait: 0
  {providers}
switchboard:
  limits: {{default_max_tokens: 100}}
  aliases:
    cheap: mini
    creative: {{target: mini, defaults: {{temperature: 1.3, max_tokens: 50}}}}
    auto: {{auto: {{simple: mini, hard: pro}}}}
  teams:
    search: {{max_budget: 0.01, budget_duration: 1d}}
  keys:
{keys}
"""
    return parse_settings(text, source="test", env={})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_800_000_000.0)


def _gateway(
    settings: Settings, clock: FakeClock, wall: FakeClock
) -> tuple[Gateway, PricedProvider]:
    provider = PricedProvider(clock, latency=0.0, usage=Usage(input_tokens=100, output_tokens=40))
    gateway = build_gateway(
        settings,
        clock=clock,
        rng=random.Random(3),
        provider=provider,
        sleep=clock.sleep,
        wall=wall,
    )
    return gateway, provider


def _request(
    model: str, caller: Caller | None, text: str = "hi", sampling: Sampling | None = None
) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=(Message(Role.USER, text),),
        sampling=sampling or Sampling(max_tokens=10),
        caller=caller,
    )


async def test_a_calls_cost_is_its_tokens_times_the_configured_prices(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, _ = _gateway(_settings(), clock, wall)
    completion = await gateway.complete(_request("mini", BOB), deadline=None)
    assert completion.route.cost_usd == pytest.approx(100 * IN_PRICE + 40 * OUT_PRICE)
    events = [e async for e in gateway.stream(_request("mini", BOB), deadline=None)]
    final = events[-1]
    # The scripted stream reports 4 input and 2 output tokens.
    assert final.route.cost_usd == pytest.approx(4 * IN_PRICE + 2 * OUT_PRICE)  # type: ignore[union-attr]


async def test_spend_adds_up_by_key_team_group_and_deployment(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, _ = _gateway(_settings(), clock, wall)
    costs = []
    for caller, model in ((ALICE, "mini"), (BOB, "mini"), (CAROL, "pro"), (CAROL, "mini")):
        completion = await gateway.complete(_request(model, caller), deadline=None)
        costs.append((caller.name, caller.team, completion.route))
    ledger = gateway.ledger
    assert ledger is not None
    snapshot = await ledger.snapshot(Period.DAY)

    def spend(dimension: Dimension, name: str) -> float:
        stats = snapshot.get(dimension, name)
        assert stats is not None, (dimension, name)
        return stats.spend_usd

    def total(pick: object) -> float:
        return sum(route.cost_usd for key, team, route in costs if pick in (key, team))

    for key in ("alice", "bob", "carol"):
        assert spend(Dimension.KEY, key) == pytest.approx(total(key))
    assert spend(Dimension.TEAM, "search") == pytest.approx(total("search"))
    assert spend(Dimension.TEAM, "ads") == pytest.approx(total("ads"))
    by_group: dict[str, float] = {}
    by_deployment: dict[str, float] = {}
    for _, _, route in costs:
        by_group[route.model_group] = by_group.get(route.model_group, 0.0) + route.cost_usd
        by_deployment[route.deployment] = by_deployment.get(route.deployment, 0.0) + route.cost_usd
    for group, amount in by_group.items():
        assert spend(Dimension.GROUP, group) == pytest.approx(amount)
    for deployment, amount in by_deployment.items():
        assert spend(Dimension.DEPLOYMENT, deployment) == pytest.approx(amount)
    mini = snapshot.get(Dimension.GROUP, "mini")
    assert mini is not None
    assert (mini.requests, mini.input_tokens, mini.output_tokens) == (3, 300, 120)


async def test_a_key_over_its_budget_is_refused_before_any_upstream_call(
    clock: FakeClock, wall: FakeClock
) -> None:
    # 100 in + 40 out at mini's prices: $0.0006 a call; alice may spend $0.001 a day.
    gateway, provider = _gateway(_settings(", max_budget: 0.001, budget_duration: 1d"), clock, wall)
    await gateway.complete(_request("mini", ALICE), deadline=None)
    assert len(provider.calls) == 1
    # Spent $0.0006; the next call may cost up to 2 in + 10 out tokens ($0.000104):
    # it fits, and then the third does not.
    await gateway.complete(_request("mini", ALICE), deadline=None)
    with pytest.raises(BudgetExceeded) as caught:
        await gateway.complete(_request("mini", ALICE), deadline=None)
    assert len(provider.calls) == 2
    err = caught.value
    assert err.limit_key == "budget:key:alice"
    day = 86_400
    assert err.retry_after == pytest.approx(day - wall() % day)
    # Counted as a refused call, against the key.
    ledger = gateway.ledger
    assert ledger is not None
    stats = (await ledger.snapshot(Period.DAY)).get(Dimension.KEY, "alice")
    assert stats is not None
    assert stats.errors == {"budget_exceeded": 1}
    # A new day, a new budget.
    wall.advance(err.retry_after or 0)
    await gateway.complete(_request("mini", ALICE), deadline=None)
    assert len(provider.calls) == 3


async def test_a_team_budget_covers_every_key_of_the_team(
    clock: FakeClock, wall: FakeClock
) -> None:
    # Team search may spend $0.01 a day: bob has no budget of his own. The request
    # is sized so the estimate is what the provider reports (100 in, 40 out): $0.0022.
    gateway, provider = _gateway(_settings(), clock, wall)
    served = 0
    refusal: BudgetExceeded | None = None
    for turn in range(40):
        caller = ALICE if turn % 2 else BOB
        request = _request("pro", caller, "x" * 100, Sampling(max_tokens=40))
        try:
            await gateway.complete(request, deadline=None)
        except BudgetExceeded as err:
            refusal = err
            break
        served += 1
    assert refusal is not None
    assert refusal.limit_key == "budget:team:search"
    assert len(provider.calls) == served
    # Four calls fit in $0.01; a fifth would have gone over, so it was refused.
    assert served == 4
    # Another team's key is not held back.
    await gateway.complete(_request("pro", CAROL), deadline=None)
    assert len(provider.calls) == served + 1


async def test_a_provider_over_its_budget_is_skipped(clock: FakeClock, wall: FakeClock) -> None:
    settings = _settings(
        providers="provider_budget_config: {openai: {budget_limit: 0.003, time_period: 1h}}"
    )
    gateway, _ = _gateway(settings, clock, wall)
    used: list[str] = []
    for _ in range(12):
        completion = await gateway.complete(_request("pro", CAROL), deadline=None)
        used.append(completion.route.deployment)
    openai_spend = sum(0.0022 for d in used if d == "pro-openai")
    # Each pro call costs $0.0022: once openai has spent its $0.003, only anthropic serves.
    assert openai_spend >= 0.003
    first_over = next(i for i in range(len(used)) if sum(
        0.0022 for d in used[: i + 1] if d == "pro-openai") >= 0.003)  # fmt: skip
    assert set(used[first_over + 1 :]) == {"pro-anthropic"}
    # mini is openai's only deployment: skipped as if cooling down, for the rest of the hour.
    with pytest.raises(AllCoolingDown) as caught:
        await gateway.complete(_request("mini", CAROL), deadline=None)
    assert caught.value.reason == "ALL_DEPLOYMENTS_RATE_LIMITED"
    assert caught.value.retry_after == pytest.approx(3600 - wall() % 3600)


async def test_alias_defaults_fill_only_what_the_request_left_unset(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, provider = _gateway(_settings(), clock, wall)
    seen: list[Sampling] = []
    original = provider.complete

    async def complete(deployment: Deployment, request: CompletionRequest, *, timeout_s: float):  # type: ignore[no-untyped-def]
        seen.append(request.sampling)
        return await original(deployment, request, timeout_s=timeout_s)

    provider.complete = complete  # type: ignore[method-assign]
    done = await gateway.complete(
        _request("creative", BOB, sampling=Sampling(temperature=0.2)), deadline=None
    )
    await gateway.complete(_request("creative", BOB, sampling=Sampling()), deadline=None)
    assert seen == [
        Sampling(max_tokens=50, temperature=0.2),
        Sampling(max_tokens=50, temperature=1.3),
    ]
    assert done.route.model_group == "mini"
    assert done.route.alias is not None
    assert done.route.alias.name == "creative"
    assert done.route.alias.auto is None


async def test_auto_sends_simple_prompts_to_cheap_and_hard_ones_to_strong(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, _ = _gateway(_settings(), clock, wall)
    simple = await gateway.complete(_request("auto", CAROL, "Hi! How are you?"), deadline=None)
    hard = await gateway.complete(
        _request(
            "auto",
            CAROL,
            "Prove that there are infinitely many primes of the form 4k+3, then design an "
            "algorithm that lists them up to n in O(n log log n) time and prove its bound "
            "step by step.",
        ),
        deadline=None,
    )
    assert simple.route.model_group == "mini"
    assert hard.route.model_group == "pro"
    for completion, tier in ((simple, "simple"), (hard, "hard")):
        alias = completion.route.alias
        assert alias is not None
        assert alias.name == "auto"
        assert alias.auto is not None
        assert alias.auto.tier == tier
        assert alias.auto.model_group == completion.route.model_group
        assert alias.auto.reason.startswith(tier)


async def test_a_stream_the_caller_leaves_is_priced_for_what_it_delivered(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, provider = _gateway(_settings(), clock, wall)
    events = gateway.stream(_request("mini", BOB), deadline=None)
    first = await anext(events)
    assert first.content == "Hel"  # type: ignore[union-attr]
    await events.aclose()
    assert provider.streams[0].closed
    ledger = gateway.ledger
    assert ledger is not None
    snapshot = await ledger.snapshot(Period.DAY)
    bob = snapshot.get(Dimension.KEY, "bob")
    assert bob is not None
    # The prompt (2 tokens as the fake estimates it) and the one piece delivered.
    assert bob.spend_usd == pytest.approx(2 * IN_PRICE + 1 * OUT_PRICE)
    assert (bob.requests, bob.errors) == (1, {"cancelled": 1})
    deployment = snapshot.get(Dimension.DEPLOYMENT, "mini-a")
    assert deployment is not None
    assert (deployment.requests, deployment.output_tokens) == (1, 1)


async def test_a_stream_closed_after_its_final_event_is_counted_once(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, _ = _gateway(_settings(), clock, wall)
    events = gateway.stream(_request("mini", BOB), deadline=None)
    seen = []
    async for event in events:
        seen.append(event)
        if isinstance(event, StreamFinal):
            break  # the generator stays suspended at its final event
    await events.aclose()
    ledger = gateway.ledger
    assert ledger is not None
    bob = (await ledger.snapshot(Period.DAY)).get(Dimension.KEY, "bob")
    assert bob is not None
    assert (bob.requests, bob.errors) == (1, {})
    assert bob.spend_usd == pytest.approx(seen[-1].route.cost_usd)  # type: ignore[union-attr]


async def test_an_answer_refused_as_invalid_json_is_still_paid_for(
    clock: FakeClock, wall: FakeClock
) -> None:
    gateway, provider = _gateway(_settings(), clock, wall)
    request = CompletionRequest(
        model="mini",
        messages=(Message(Role.USER, "as JSON please"),),
        caller=BOB,
        response_format=ResponseFormat(FormatKind.JSON_OBJECT),
        validate_json=True,
    )
    with pytest.raises(InvalidOutput) as caught:
        await gateway.complete(request, deadline=None)  # the script answers plain text
    assert caught.value.usage == provider.usage
    ledger = gateway.ledger
    assert ledger is not None
    bob = (await ledger.snapshot(Period.DAY)).get(Dimension.KEY, "bob")
    assert bob.errors == {"invalid_output": 1}
    assert bob.spend_usd == pytest.approx(100 * IN_PRICE + 40 * OUT_PRICE)
    # Unchecked, the same answer is returned (and priced once).
    unchecked = dataclasses.replace(request, validate_json=False)
    completion = await gateway.complete(unchecked, deadline=None)
    assert completion.response.message.content == "hello from mini-a"
