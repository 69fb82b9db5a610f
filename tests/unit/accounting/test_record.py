"""How one call record adds up: per group, key, team, deployment and provider."""

from __future__ import annotations

import math

import pytest

from switchboard.accounting import CallStats, Dimension, Ledger, Period, Snapshot
from switchboard.accounting.histogram import RELATIVE_ERROR
from switchboard.accounting.tally import MAX_COUNT, MAX_KIND, MAX_USD

from .fakes import Wall, attempt, call, paid

GROUP, KEY, TEAM = Dimension.GROUP, Dimension.KEY, Dimension.TEAM
DEPLOYMENT, PROVIDER = Dimension.DEPLOYMENT, Dimension.PROVIDER
# The histogram's bound, and a hair for float rounding.
REL = RELATIVE_ERROR * 1.001


async def day(ledger: Ledger) -> Snapshot:
    return await ledger.snapshot(Period.DAY)


def stats(snapshot: Snapshot, dimension: Dimension, name: str) -> CallStats:
    found = snapshot.get(dimension, name)
    assert found is not None, f"no {dimension.value} {name!r}"
    return found


async def test_a_failed_attempt_then_a_success_is_one_request_of_the_group() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(
        call(
            attempt("gpt-a", "rate_limited", latency_s=0.1),
            attempt("gpt-b", "success", latency_s=0.9, input_tokens=100, output_tokens=20,
                    cost_usd=0.003, provider="azure"),
            latency_s=1.0, input_tokens=100, output_tokens=20, cost_usd=0.003,
        )
    )  # fmt: skip
    snapshot = await day(ledger)
    group = stats(snapshot, GROUP, "chat")
    assert (group.requests, group.errors, group.spend_usd) == (1, {}, 0.003)
    assert (group.input_tokens, group.output_tokens) == (100, 20)
    assert group.latency_p50_s == pytest.approx(1.0, rel=REL)
    a, b = stats(snapshot, DEPLOYMENT, "gpt-a"), stats(snapshot, DEPLOYMENT, "gpt-b")
    assert (a.requests, a.errors, a.spend_usd, a.input_tokens) == (1, {"rate_limited": 1}, 0, 0)
    assert (b.requests, b.errors, b.spend_usd, b.input_tokens) == (1, {}, 0.003, 100)
    assert a.latency_p95_s == pytest.approx(0.1, rel=REL)
    assert b.latency_p95_s == pytest.approx(0.9, rel=REL)
    assert stats(snapshot, PROVIDER, "openai").requests == 1
    assert stats(snapshot, PROVIDER, "azure").spend_usd == 0.003


async def test_a_failed_call_counts_its_error_kind_everywhere_it_is_seen() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(call(attempt("gpt-a", "timeout"), outcome="all_deployments_failed"))
    ledger.record(call(outcome="budget_exceeded", latency_s=None))
    snapshot = await day(ledger)
    for dimension, name in ((GROUP, "chat"), (KEY, "alice"), (TEAM, "red")):
        found = stats(snapshot, dimension, name)
        assert found.requests == 2
        assert found.errors == {"all_deployments_failed": 1, "budget_exceeded": 1}
    assert stats(snapshot, DEPLOYMENT, "gpt-a").errors == {"timeout": 1}


async def test_spend_adds_up_by_key_team_group_deployment_and_provider() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(paid(0.25, key="alice", team="red", deployment="gpt-a"))
    ledger.record(paid(0.5, key="bob", team="red", deployment="gpt-b"))
    ledger.record(paid(1.0, key="carol", team="blue", deployment="gpt-a", group="code"))
    ledger.record(paid(2.0, key=None, team=None, deployment="gpt-b"))
    snapshot = await day(ledger)

    def spend(dimension: Dimension) -> dict[str, float]:
        return {name: s.spend_usd for name, s in snapshot.stats[dimension].items()}

    assert spend(KEY) == {"alice": 0.25, "bob": 0.5, "carol": 1.0}
    assert spend(TEAM) == {"blue": 1.0, "red": 0.75}
    assert spend(GROUP) == {"chat": 2.75, "code": 1.0}
    assert spend(DEPLOYMENT) == {"gpt-a": 1.25, "gpt-b": 2.5}
    assert spend(PROVIDER) == {"openai": 3.75}
    assert stats(snapshot, GROUP, "chat").input_tokens == 30


async def test_a_cache_hit_costs_nothing_and_counts_what_it_saved() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(paid(0.4))
    ledger.record(call(cost_usd=0.0, saved_usd=0.4, cache_hit=True, latency_s=0.001))
    snapshot = await day(ledger)
    for dimension, name in ((GROUP, "chat"), (KEY, "alice"), (TEAM, "red")):
        found = stats(snapshot, dimension, name)
        assert (found.requests, found.cache_hits, found.cache_hit_rate) == (2, 1, 0.5)
        assert (found.spend_usd, found.saved_usd) == (0.4, 0.4)
    # A hit reached no deployment.
    assert stats(snapshot, DEPLOYMENT, "gpt-a").requests == 1


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf, MAX_USD * 2, 1e308])
async def test_hostile_costs_count_as_nothing(bad: float) -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(paid(0.5))
    hostile = attempt(cost_usd=bad, latency_s=bad, input_tokens=-5, output_tokens=-1)
    ledger.record(call(hostile, cost_usd=bad, saved_usd=bad, latency_s=bad))
    snapshot = await day(ledger)
    for dimension, name in ((GROUP, "chat"), (KEY, "alice"), (DEPLOYMENT, "gpt-a"),
                            (PROVIDER, "openai")):  # fmt: skip
        found = stats(snapshot, dimension, name)
        assert found.requests == 2
        assert found.spend_usd == 0.5
        assert found.saved_usd == 0.0
        assert found.input_tokens == 10
        assert math.isfinite(found.latency_p95_s or 0.0)


@pytest.mark.parametrize(
    ("tokens", "counted"),
    [(-1, 0), (MAX_COUNT + 1, 0), (10**30, 0), (3.0, 3), (3.5, 0), (math.nan, 0), (True, 1)],
)
async def test_hostile_token_counts(tokens: int, counted: int) -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(call(attempt(input_tokens=tokens), input_tokens=tokens, output_tokens=tokens))
    snapshot = await day(ledger)
    group = stats(snapshot, GROUP, "chat")
    assert (group.input_tokens, group.output_tokens) == (counted, counted)
    assert type(group.input_tokens) is int
    assert stats(snapshot, DEPLOYMENT, "gpt-a").input_tokens == counted


async def test_latency_that_is_no_latency_is_not_a_sample() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(call(latency_s=None))
    ledger.record(call(latency_s=-3.0))
    snapshot = await day(ledger)
    group = stats(snapshot, GROUP, "chat")
    assert group.requests == 2
    assert group.latency_p50_s is None


async def test_long_error_kinds_are_cut() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(call(outcome="x" * 1000))
    assert stats(await day(ledger), GROUP, "chat").errors == {"x" * MAX_KIND: 1}


async def test_percentiles() -> None:
    ledger = Ledger(wall=Wall())
    for ms in range(1, 101):
        ledger.record(call(latency_s=ms / 1000))
    group = stats(await day(ledger), GROUP, "chat")
    assert group.latency_p50_s == pytest.approx(0.050, rel=REL)
    assert group.latency_p95_s == pytest.approx(0.095, rel=REL)


async def test_a_record_that_cannot_be_read_is_not_counted_and_does_not_raise() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(call(cost_usd="free"))  # type: ignore[arg-type]
    ledger.record(None)  # type: ignore[arg-type]
    ledger.record(paid(1.0))
    assert ledger.status.failed_records == 2
    assert stats(await day(ledger), GROUP, "chat").spend_usd == 1.0
