"""Latency percentiles from log-spaced buckets, mergeable by adding counts.

A sample `x` falls in bucket `i = ceil(log(x) / log(GAMMA))`, which covers
`(GAMMA**(i-1), GAMMA**i]`; the bucket reads back as `2 * GAMMA**i / (GAMMA + 1)`,
which is within `RELATIVE_ERROR` of every value in it (the DDSketch
construction). So a quantile read from the buckets is within
`RELATIVE_ERROR` of the exact sample at the same rank, however the samples
are spread, and histograms of several processes merge by adding counts per
bucket: a Redis hash field per bucket does it with HINCRBY.

A histogram is a plain `dict[int, int]` (bucket index -> count), sparse,
so the hot path pays one dict update per sample. Samples are clamped to
[MIN_S, MAX_S] (0.1 ms to 10 min, about 200 buckets), so the bound holds
inside that range; below it a latency reads as about 0.1 ms, above it as
about 10 minutes. Negative and non-finite samples are not latencies and
are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping

RELATIVE_ERROR = 0.04
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
MIN_S = 1e-4
MAX_S = 600.0

_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
MIN_INDEX = math.ceil(math.log(MIN_S) * _INV_LOG_GAMMA)
MAX_INDEX = math.ceil(math.log(MAX_S) * _INV_LOG_GAMMA)

Histogram = dict[int, int]


def bucket(seconds: float) -> int | None:
    """The bucket of a sample; None for a negative or non-finite one (not counted)."""
    if seconds >= MIN_S:
        if seconds >= MAX_S:
            return MAX_INDEX if seconds != math.inf else None
        return math.ceil(math.log(seconds) * _INV_LOG_GAMMA)
    if seconds >= 0.0:
        return MIN_INDEX
    return None  # negative or NaN


def value(index: int) -> float:
    """What a bucket reads as: within RELATIVE_ERROR of anything in it."""
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


def nearest_rank(q: float, n: int) -> int:
    """The 1-based rank of the q-quantile of n samples (the nearest-rank method).

    The small tolerance keeps products such as 0.95 * 20 from rounding up a rank.
    """
    return min(n, max(1, math.ceil(q * n - 1e-9)))


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of the samples counted; None with no sample."""
    n = sum(counts.values())
    if n <= 0:
        return None
    rank = nearest_rank(q, n)
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return value(index)
    return value(max(counts))  # unreachable with positive counts


def merge(into: MutableMapping[int, int], counts: Mapping[int, int]) -> None:
    for index, count in counts.items():
        into[index] = into.get(index, 0) + count


def of(samples: Iterable[float]) -> Histogram:
    """A histogram of samples, for tests and tools."""
    counts: Histogram = {}
    for sample in samples:
        index = bucket(sample)
        if index is not None:
            counts[index] = counts.get(index, 0) + 1
    return counts
