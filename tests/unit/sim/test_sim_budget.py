"""The TPM budget: a rolling minute, and the exact wait until a spend fits."""

from __future__ import annotations

import math

import pytest

from switchboard.sim.budget import TokenBudget
from tests.unit import fakes


class FakeClock(fakes.FakeClock):
    """The shared fake clock, started at 1000 s."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_spends_within_the_limit_are_admitted(clock: FakeClock) -> None:
    budget = TokenBudget(100)
    assert budget.try_spend(60, clock()) is None
    assert budget.try_spend(40, clock()) is None
    assert budget.remaining(clock()) == 0


def test_the_wait_is_exactly_until_enough_spends_expire(clock: FakeClock) -> None:
    budget = TokenBudget(100)
    assert budget.try_spend(60, clock()) is None
    clock.advance(10)
    assert budget.try_spend(30, clock()) is None
    clock.advance(10)
    # 90 used; 50 more needs 40 freed: the first spend expires 60 s after it was made.
    wait = budget.try_spend(50, clock())
    assert wait == pytest.approx(40.0)
    assert budget.used(clock()) == 90  # a refused spend spends nothing
    assert wait is not None
    clock.advance(wait - 0.001)
    assert budget.try_spend(50, clock()) is not None
    clock.advance(0.001)
    assert budget.try_spend(50, clock()) is None
    assert budget.used(clock()) == 80


def test_a_wait_may_need_several_spends_to_expire(clock: FakeClock) -> None:
    budget = TokenBudget(100)
    for _ in range(5):
        assert budget.try_spend(20, clock()) is None
        clock.advance(1)
    # now = start + 5; 100 used; 50 more needs the first three spends (at +0, +1, +2) gone.
    assert budget.try_spend(50, clock()) == pytest.approx(57.0)


def test_a_spend_larger_than_the_limit_never_fits(clock: FakeClock) -> None:
    budget = TokenBudget(100)
    assert budget.try_spend(101, clock()) == math.inf
    assert budget.used(clock()) == 0


def test_reset_in_is_when_the_last_spend_expires(clock: FakeClock) -> None:
    budget = TokenBudget(100, window_s=60)
    assert budget.reset_in(clock()) == 0.0
    budget.try_spend(10, clock())
    clock.advance(15)
    budget.try_spend(10, clock())
    assert budget.reset_in(clock()) == pytest.approx(60.0)
    clock.advance(60)
    assert budget.reset_in(clock()) == 0.0
    assert budget.remaining(clock()) == 100


def test_invalid_budgets_are_rejected() -> None:
    with pytest.raises(ValueError, match="limit"):
        TokenBudget(0)
    with pytest.raises(ValueError, match="window"):
        TokenBudget(10, window_s=0)
