"""Cost-based: cheapest per input plus output token, unknown price last."""

from __future__ import annotations

import random
from collections import Counter

from switchboard.config import Deployment
from switchboard.routing.cost import CostBased
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import deployment


def _priced(id: str, input: float | None, output: float | None) -> Deployment:
    return deployment(id, input_cost_per_token=input, output_cost_per_token=output)


def _chosen(*candidates: Deployment) -> Counter[str]:
    strategy = CostBased(random.Random(4))
    return Counter(strategy.choose(candidates, CallKind.COMPLETE).deployment.id for _ in range(500))


def test_the_cheapest_sum_wins() -> None:
    # b is dearer on input but cheaper overall.
    assert set(_chosen(_priced("a", 1e-6, 4e-6), _priced("b", 2e-6, 2e-6))) == {"b"}


def test_an_unknown_price_ranks_last() -> None:
    dear = _priced("dear", 1.0, 1.0)
    assert set(_chosen(_priced("free?", None, None), dear)) == {"dear"}
    assert set(_chosen(_priced("half", 0.0, None), dear)) == {"dear"}
    assert set(_chosen(_priced("x", None, None), _priced("y", None, 0.0))) == {"x", "y"}


def test_ties_are_random() -> None:
    counts = _chosen(_priced("a", 1e-6, 1e-6), _priced("b", 1e-6, 1e-6), _priced("c", 1e-6, 2e-6))
    assert counts["c"] == 0
    assert 200 < counts["a"] < 300
