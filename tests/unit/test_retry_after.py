"""Reading how long a provider asked us to wait."""

from __future__ import annotations

import math

import pytest

from switchboard import errors
from switchboard.errors import MAX_RETRY_AFTER_S
from switchboard.providers.retry_after import (
    MAX_REMAINING,
    parse_duration,
    parse_rate_limit,
    parse_retry_after,
)

NOW = 1_700_000_000.0


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}, 10.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-reset-tokens": "6s"}, 90.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, clock) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("250ms", 0.25), ("6.5s", 6.5), ("1h2m3s", 3723.0), ("12", 12.0), ("1x", None), ("", None)],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-inf"}, None),
        ({"retry-after": "NaN"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "1e20"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "9" * 400}, None),  # longer than any wait: garbage
        ({"retry-after": "soon, ish"}, None),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),  # past: now
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
        ({"retry-after-ms": "inf", "retry-after": "3"}, 3.0),  # the bad one is ignored
        ({"retry-after-ms": "NaN"}, None),
        ({"retry-after-ms": "-100"}, None),
        ({"retry-after-ms": "1e20"}, MAX_RETRY_AFTER_S),
        ({"x-ratelimit-reset-requests": "99999999999h"}, MAX_RETRY_AFTER_S),
        ({"x-ratelimit-reset-tokens": "inf"}, None),
        ({"x-ratelimit-reset-tokens": "1e400"}, None),
        ({"x-ratelimit-reset-tokens": "1" * 300 + "s"}, None),
    ],
)
def test_hostile_waits_are_ignored_or_capped(
    headers: dict[str, str], expected: float | None
) -> None:
    wait = parse_retry_after(headers, clock)
    assert wait == expected
    assert wait is None or (math.isfinite(wait) and 0 <= wait <= MAX_RETRY_AFTER_S)


@pytest.mark.parametrize("value", ["inf", "NaN", "-3", "1e400", "lots", "9" * 400])
def test_hostile_remaining_counts_are_ignored(value: str) -> None:
    hint = parse_rate_limit(
        {"x-ratelimit-remaining-requests": value, "x-ratelimit-reset-requests": value}
    )
    assert hint is None


def test_remaining_counts_are_capped() -> None:
    hint = parse_rate_limit({"x-ratelimit-remaining-tokens": "1e30"})
    assert hint is not None
    assert hint.tokens_remaining == MAX_REMAINING


@pytest.mark.parametrize("wait", [math.inf, -math.inf, math.nan, -1.0, 1e300])
def test_a_provider_error_never_holds_an_impossible_wait(wait: float) -> None:
    err = errors.UpstreamRateLimited("rate limited", deployment="d", retry_after=wait)
    assert err.retry_after is None or err.retry_after == MAX_RETRY_AFTER_S
