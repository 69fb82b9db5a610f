"""The budget guard: refuses a call that would go over, holds estimates of calls in flight."""

from __future__ import annotations

import re

import pytest

from switchboard.accounting.records import Dimension
from switchboard.config import Budget
from switchboard.domain import Caller
from switchboard.errors import BudgetExceeded
from switchboard.limits.budgets import BudgetGuard
from tests.unit.fakes import FakeClock

RESET = 1_000.0


class Spend:
    """A ledger's window spend, set by the test."""

    def __init__(self) -> None:
        self.spent: dict[tuple[Dimension, str], float] = {}

    def window_spend(self, dimension: Dimension, name: str) -> tuple[float, float]:
        return self.spent.get((dimension, name), 0.0), RESET


ALICE = Caller(name="alice", metadata={"team": "search"})
BOB = Caller(name="bob", metadata={"team": "search"})
CAROL = Caller(name="carol")


def _guard(spend: Spend, wall: FakeClock, clock: FakeClock) -> BudgetGuard:
    return BudgetGuard(
        {
            (Dimension.KEY, "alice"): Budget(1.0, "1d"),
            (Dimension.KEY, "carol"): Budget(0.5, None),
            (Dimension.TEAM, "search"): Budget(1.5, "1h"),
            (Dimension.PROVIDER, "openai"): Budget(10.0, "1d"),
        },
        spend=spend,
        wall=wall,
        clock=clock,
    )


@pytest.fixture
def spend() -> Spend:
    return Spend()


@pytest.fixture
def guard(spend: Spend) -> BudgetGuard:
    return _guard(spend, FakeClock(900.0), FakeClock(50.0))


def test_a_key_over_its_budget_is_refused_with_the_time_to_its_reset(
    guard: BudgetGuard, spend: Spend
) -> None:
    spend.spent[(Dimension.KEY, "alice")] = 1.0
    with pytest.raises(BudgetExceeded) as caught:
        guard.admit(ALICE, 0.0)
    err = caught.value
    assert err.reason == "BUDGET_EXCEEDED"
    assert err.limit_key == "budget:key:alice"
    assert err.retry_after == pytest.approx(RESET - 900.0)
    assert "has spent $1.000000 of its $1.000000 per 1d" in err.message


def test_a_call_that_would_go_over_is_refused_before_the_spend_reaches_the_budget(
    guard: BudgetGuard, spend: Spend
) -> None:
    spend.spent[(Dimension.KEY, "alice")] = 0.9
    assert guard.admit(ALICE, 0.1) is not None
    with pytest.raises(BudgetExceeded, match=re.escape("this call may cost up to $0.100001")):
        guard.admit(ALICE, 0.100001)


def test_calls_in_flight_hold_their_estimate_until_released(
    guard: BudgetGuard, spend: Spend
) -> None:
    first = guard.admit(ALICE, 0.6)
    assert first is not None
    with pytest.raises(BudgetExceeded, match=re.escape("calls in flight hold $0.600000")):
        guard.admit(ALICE, 0.6)
    first.release()
    first.release()  # idempotent: a second release frees nothing twice
    second = guard.admit(ALICE, 0.6)
    assert second is not None
    with pytest.raises(BudgetExceeded):
        guard.admit(ALICE, 0.6)


def test_a_team_budget_covers_every_key_of_the_team(guard: BudgetGuard, spend: Spend) -> None:
    spend.spent[(Dimension.TEAM, "search")] = 1.5
    with pytest.raises(BudgetExceeded) as caught:
        guard.admit(BOB, 0.0)  # bob has no budget of his own
    assert caught.value.limit_key == "budget:team:search"
    assert caught.value.retry_after == pytest.approx(RESET - 900.0)


def test_an_all_time_budget_never_resets(guard: BudgetGuard, spend: Spend) -> None:
    spend.spent[(Dimension.KEY, "carol")] = 0.5
    with pytest.raises(BudgetExceeded) as caught:
        guard.admit(CAROL, 0.0)
    assert caught.value.retry_after is None
    assert "in all" in caught.value.message


def test_a_call_dearer_than_the_whole_budget_is_told_so_without_a_retry(
    guard: BudgetGuard,
) -> None:
    with pytest.raises(BudgetExceeded) as caught:
        guard.admit(ALICE, 5.0)
    assert caught.value.retry_after is None


def test_callers_without_budgets_and_open_gateways_hold_nothing(guard: BudgetGuard) -> None:
    assert guard.admit(None, 100.0) is None
    assert guard.admit(Caller(name="dave"), 100.0) is None


@pytest.mark.parametrize("estimate", [float("nan"), float("inf"), -3.0])
def test_a_hostile_estimate_counts_as_nothing(guard: BudgetGuard, estimate: float) -> None:
    hold = guard.admit(ALICE, estimate)
    assert hold is not None
    assert guard.admit(ALICE, 1.0) is not None


def test_a_provider_over_budget_is_paused_until_its_window_resets(spend: Spend) -> None:
    wall, clock = FakeClock(900.0), FakeClock(50.0)
    guard = _guard(spend, wall, clock)
    assert guard.provider_paused_until("openai") is None
    assert guard.provider_paused_until("anthropic") is None  # no budget
    spend.spent[(Dimension.PROVIDER, "openai")] = 10.0
    # On the monotonic clock: now plus the wall time left in the window.
    assert guard.provider_paused_until("openai") == pytest.approx(50.0 + RESET - 900.0)


def test_a_budget_line_reports_spend_and_what_is_left(guard: BudgetGuard, spend: Spend) -> None:
    spend.spent[(Dimension.TEAM, "search")] = 0.25
    line = guard.line(Dimension.TEAM, "search")
    assert line is not None
    assert (line.spend_usd, line.remaining_usd, line.resets_at) == (0.25, 1.25, RESET)
    carol = guard.line(Dimension.KEY, "carol")
    assert carol is not None
    assert carol.resets_at is None
    assert guard.line(Dimension.KEY, "dave") is None
