"""Fault draws: seeded, at the configured rates, and validated."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from switchboard.sim import FaultKind, FaultRates, InvalidProfileError

DRAWS = 20_000


def test_draws_follow_the_rates() -> None:
    rates = FaultRates(rate_limit=0.10, server_error=0.05, mid_stream_drop=0.20, timeout=0.01)
    rng = random.Random(1234)
    counts = Counter(rates.draw(rng) for _ in range(DRAWS))
    for kind in FaultKind:
        expected = rates.rate(kind) * DRAWS
        # 5 standard deviations of a binomial: fails on a real bug, not on noise.
        tolerance = 5 * (DRAWS * rates.rate(kind) * (1 - rates.rate(kind))) ** 0.5 + 1
        assert abs(counts[kind] - expected) <= tolerance, kind
    assert abs(counts[None] - 0.64 * DRAWS) <= 5 * (DRAWS * 0.64 * 0.36) ** 0.5


def test_same_seed_same_faults() -> None:
    rates = FaultRates(server_error=0.3, connection_reset=0.3)
    rng_a, rng_b = random.Random(7), random.Random(7)
    draws = [rates.draw(rng_a) for _ in range(100)]
    assert draws == [rates.draw(rng_b) for _ in range(100)]
    assert len(set(draws)) == 3


def test_rate_one_always_fails_and_rate_zero_never() -> None:
    rng = random.Random(0)
    always = FaultRates(unavailable=1.0)
    assert {always.draw(rng) for _ in range(500)} == {FaultKind.UNAVAILABLE}
    assert {FaultRates().draw(rng) for _ in range(500)} == {None}


def test_no_faults_consume_no_randomness() -> None:
    rng = random.Random(5)
    FaultRates().draw(rng)
    assert rng.random() == random.Random(5).random()


def test_header_values_are_the_kind_names() -> None:
    assert {kind.value for kind in FaultKind} == {
        "rate_limit",
        "server_error",
        "unavailable",
        "timeout",
        "connection_reset",
        "mid_stream_drop",
        "context_window",
        "content_policy",
        "authentication",
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"server_error": -0.1}, "server_error"),
        ({"timeout": 1.5}, "timeout"),
        ({"rate_limit": 0.6, "unavailable": 0.6}, "faults"),
        ({"retry_after_s": -1.0}, "retry_after_s"),
        ({"drop_after_chunks": -1}, "drop_after_chunks"),
        ({"hang_s": 0.0}, "hang_s"),
    ],
)
def test_impossible_rates_are_rejected(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidProfileError) as caught:
        FaultRates(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
