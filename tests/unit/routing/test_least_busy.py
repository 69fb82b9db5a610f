"""Least-busy: fewest calls in flight, ties at random."""

from __future__ import annotations

import random
from collections import Counter

from switchboard.routing.least_busy import LeastBusy
from switchboard.routing.load import InFlight
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import deployment

ABC = (deployment("a"), deployment("b"), deployment("c"))


def _busy(**counts: int) -> InFlight:
    load = InFlight()
    for id, n in counts.items():
        for _ in range(n):
            load.started(id)
    return load


def test_the_fewest_in_flight_wins() -> None:
    strategy = LeastBusy(_busy(a=3, b=1, c=2), random.Random(1))
    chosen = [strategy.choose(ABC, CallKind.COMPLETE) for _ in range(100)]
    assert {(d.deployment.id, d.explored) for d in chosen} == {("b", False)}


def test_ties_are_random_not_first_in_order() -> None:
    strategy = LeastBusy(_busy(a=1), random.Random(1))
    counts = Counter(strategy.choose(ABC, CallKind.STREAM).deployment.id for _ in range(1000))
    assert counts["a"] == 0
    assert 400 < counts["b"] < 600
