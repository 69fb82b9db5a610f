"""Simple-shuffle: weighted by weight, else rpm, else tpm, else uniform."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from switchboard.config import Deployment
from switchboard.routing.shuffle import SimpleShuffle
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import deployment

DRAWS = 10_000


def _shares(candidates: tuple[Deployment, ...]) -> dict[str, float]:
    strategy = SimpleShuffle(random.Random(5))
    decisions = [strategy.choose(candidates, CallKind.COMPLETE) for _ in range(DRAWS)]
    assert not any(d.explored for d in decisions)
    counts = Counter(d.deployment.id for d in decisions)
    return {d.id: counts[d.id] / DRAWS for d in candidates}


def test_weight_sets_the_shares() -> None:
    shares = _shares((deployment("a", weight=3.0, rpm=1), deployment("b", weight=1.0, rpm=1000)))
    assert shares["a"] == pytest.approx(0.75, abs=0.02)


def test_rpm_when_a_weight_is_missing() -> None:
    shares = _shares((deployment("a", weight=3.0, rpm=100, tpm=1), deployment("b", rpm=900, tpm=1)))
    assert shares["a"] == pytest.approx(0.1, abs=0.02)


def test_tpm_when_an_rpm_is_missing() -> None:
    shares = _shares((deployment("a", rpm=5, tpm=8000), deployment("b", tpm=2000)))
    assert shares["a"] == pytest.approx(0.8, abs=0.02)


def test_uniform_when_nothing_is_shared_by_all() -> None:
    shares = _shares((deployment("a", weight=9.0), deployment("b", rpm=9), deployment("c")))
    assert all(share == pytest.approx(1 / 3, abs=0.02) for share in shares.values())
