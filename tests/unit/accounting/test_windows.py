"""Budget windows: LiteLLM's durations, epoch and calendar alignment, boundaries."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from switchboard.accounting import BudgetWindow

DAY = 86_400.0
US = 1e-6


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds", "months"),
    [
        ("30s", 30, 0),
        ("10m", 600, 0),
        ("24h", 86_400, 0),
        ("1d", 86_400, 0),
        ("7d", 604_800, 0),
        ("2w", 1_209_600, 0),
        ("1mo", 0, 1),
        ("3mo", 0, 3),
        # LiteLLM's words, read as LiteLLM reads them ("monthly" is 30 days there).
        ("daily", 86_400, 0),
        ("Weekly", 604_800, 0),
        ("hourly", 3600, 0),
        ("monthly", 30 * 86_400, 0),
    ],
)
def test_durations_read_as_litellm_reads_them(text: str, seconds: int, months: int) -> None:
    window = BudgetWindow(text)
    assert (window.seconds, window.months) == (seconds, months)
    assert window.duration == text


@pytest.mark.parametrize(
    "text",
    ["", "d", "1", "1y", "1 d", " 1d", "1d ", "1D", "1.5h", "-1d", "0s", "0mo", "1mos", "P1D",
     "9999999999999d", "1201mo"],
)  # fmt: skip
def test_anything_else_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("\\", "\\\\").replace(".", r"\.")):
        BudgetWindow(text)


def test_windows_that_cut_time_alike_are_equal() -> None:
    assert BudgetWindow("24h") == BudgetWindow("1d") == BudgetWindow("daily")
    assert hash(BudgetWindow("60m")) == hash(BudgetWindow("1h"))
    assert BudgetWindow("1mo") != BudgetWindow("30d")


def test_fixed_windows_are_aligned_to_the_epoch() -> None:
    window = BudgetWindow("1d")
    boundary = 20_425 * DAY
    assert window.window_id(boundary) == "86400s:20425"
    assert window.window_id(boundary - US) == "86400s:20424"
    assert window.window_id(boundary + DAY - US) == "86400s:20425"
    assert window.resets_at(boundary) == boundary + DAY
    assert window.resets_at(boundary - US) == boundary
    assert window.bounds(boundary + 5) == (boundary, boundary + DAY)


@pytest.mark.parametrize("text", ["1s", "30s", "10m", "1h", "7d", "2w"])
def test_a_microsecond_before_a_boundary_is_the_previous_window(text: str) -> None:
    window = BudgetWindow(text)
    boundary = float((1_796_000_000 // window.seconds) * window.seconds)
    assert window.index(boundary) == window.index(boundary - US) + 1
    assert window.index(boundary) == window.index(math.nextafter(boundary, 0)) + 1
    assert window.resets_at(boundary - US) == boundary
    assert window.resets_at(boundary) == boundary + window.seconds


def test_months_are_calendar_months_in_utc() -> None:
    window = BudgetWindow("1mo")
    assert window.window_id(at(1970, 1, 1)) == "1mo:0"
    assert window.window_id(at(2026, 12, 3, 10)) == f"1mo:{56 * 12 + 11}"
    # December to January.
    new_year = at(2027, 1, 1)
    assert window.index(new_year) == window.index(new_year - US) + 1
    assert window.resets_at(new_year - US) == new_year
    assert window.bounds(new_year - US) == (at(2026, 12, 1), new_year)
    assert window.resets_at(new_year) == at(2027, 2, 1)
    # February of a leap year.
    assert window.bounds(at(2028, 2, 29, 23)) == (at(2028, 2, 1), at(2028, 3, 1))


def test_several_months_are_aligned_to_months_since_1970() -> None:
    window = BudgetWindow("3mo")
    assert window.bounds(at(2026, 12, 31)) == (at(2026, 10, 1), at(2027, 1, 1))
    assert window.bounds(at(2027, 1, 1)) == (at(2027, 1, 1), at(2027, 4, 1))
    assert window.index(at(2027, 1, 1) - US) + 1 == window.index(at(2027, 1, 1))
    assert BudgetWindow("12mo").bounds(at(2026, 6, 1)) == (at(2026, 1, 1), at(2027, 1, 1))


def test_before_the_epoch() -> None:
    assert BudgetWindow("1d").bounds(-1.0) == (-DAY, 0.0)
    assert BudgetWindow("1mo").bounds(-1.0) == (at(1969, 12, 1), 0.0)


def test_redis_keeps_a_window_twice_its_length_and_at_least_an_hour() -> None:
    assert BudgetWindow("30s").ttl_s == 3600
    assert BudgetWindow("1d").ttl_s == 2 * 86_400
    assert BudgetWindow("1mo").ttl_s == 2 * 31 * 86_400
