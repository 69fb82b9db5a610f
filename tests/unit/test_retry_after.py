"""Reading how long a provider asked us to wait."""

from __future__ import annotations

import pytest

from switchboard.providers.retry_after import parse_duration, parse_retry_after

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
