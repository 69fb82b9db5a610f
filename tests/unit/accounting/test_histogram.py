"""Log-bucketed latency histograms: bounded relative error, merging by addition."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from switchboard.accounting import histogram
from switchboard.accounting.histogram import (
    MAX_INDEX,
    MAX_S,
    MIN_INDEX,
    MIN_S,
    RELATIVE_ERROR,
    bucket,
    nearest_rank,
    quantile,
)

# Float rounding in log() and pow() may add a hair to the bound.
BOUND = RELATIVE_ERROR * (1 + 1e-9)

latencies = st.floats(min_value=MIN_S, max_value=MAX_S, allow_nan=False)
quantiles = st.sampled_from([0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]) | st.floats(0.001, 1.0)


def exact(samples: list[float], q: float) -> float:
    return sorted(samples)[nearest_rank(q, len(samples)) - 1]


@given(st.lists(latencies, min_size=1, max_size=300), quantiles)
@example([MIN_S], 0.5)
@example([MAX_S], 0.5)
@example([1.0, 2.0], 0.5)
@example([histogram.GAMMA**5], 1.0)  # exactly on a bucket's upper edge
@example([0.1] * 19 + [9.0], 0.95)  # 0.95 * 20 must not round up a rank
def test_a_quantile_is_within_the_relative_error_of_the_exact_one(
    samples: list[float], q: float
) -> None:
    got = quantile(histogram.of(samples), q)
    assert got is not None
    want = exact(samples, q)
    assert abs(got - want) <= BOUND * want


@given(st.lists(latencies, max_size=100), st.lists(latencies, max_size=100))
def test_histograms_merge_by_adding_counts(a: list[float], b: list[float]) -> None:
    merged = histogram.of(a)
    histogram.merge(merged, histogram.of(b))
    assert merged == histogram.of(a + b)


def test_an_empty_histogram_has_no_quantile() -> None:
    assert quantile({}, 0.5) is None


@pytest.mark.parametrize("sample", [-1.0, -0.0001, math.nan, math.inf, -math.inf])
def test_what_is_no_latency_is_not_counted(sample: float) -> None:
    assert bucket(sample) is None


def test_out_of_range_latencies_are_clamped() -> None:
    assert bucket(0.0) == bucket(MIN_S / 10) == MIN_INDEX
    assert bucket(MAX_S * 10) == bucket(1e300) == MAX_INDEX
    assert quantile({MIN_INDEX: 1}, 0.5) == pytest.approx(MIN_S, rel=RELATIVE_ERROR)
    assert quantile({MAX_INDEX: 1}, 0.5) == pytest.approx(MAX_S, rel=RELATIVE_ERROR)


def test_buckets_grow_by_under_ten_percent_and_stay_few() -> None:
    assert 1.05 <= histogram.GAMMA <= 1.10
    assert MAX_INDEX - MIN_INDEX < 250


def test_nearest_rank() -> None:
    assert [nearest_rank(0.5, n) for n in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert nearest_rank(0.95, 20) == 19
    assert nearest_rank(1.0, 7) == 7
    assert nearest_rank(0.0001, 7) == 1
