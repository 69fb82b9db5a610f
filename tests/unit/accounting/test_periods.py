"""Calendar periods in UTC: ids and starts, at and around boundaries."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from switchboard.accounting import Period
from switchboard.accounting.periods import hour_index, month_index, period_id, period_start, ttl_s

US = 1e-6


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def ids(wall: float) -> list[str]:
    return [period_id(period, hour_index(wall)) for period in Period]


def test_ids_sort_as_time_does() -> None:
    assert ids(at(2026, 12, 3, 10, 59, 59)) == ["2026-12-03T10", "2026-12-03", "2026-12", "all"]
    assert ids(at(2026, 12, 3, 11)) == ["2026-12-03T11", "2026-12-03", "2026-12", "all"]


def test_new_year_changes_every_period_but_all_time() -> None:
    new_year = at(2027, 1, 1)
    assert ids(new_year - US) == ["2026-12-31T23", "2026-12-31", "2026-12", "all"]
    assert ids(new_year) == ["2027-01-01T00", "2027-01-01", "2027-01", "all"]


@pytest.mark.parametrize(
    ("period", "start"),
    [
        (Period.HOUR, at(2026, 12, 3, 10)),
        (Period.DAY, at(2026, 12, 3)),
        (Period.MONTH, at(2026, 12, 1)),
        (Period.TOTAL, None),
    ],
)
def test_starts(period: Period, start: float | None) -> None:
    assert period_start(period, hour_index(at(2026, 12, 3, 10, 30))) == start


def test_month_index_is_floored_not_rounded() -> None:
    new_year = at(2027, 1, 1)
    assert month_index(new_year) == (2027 - 1970) * 12
    assert month_index(math.nextafter(new_year, 0)) == (2027 - 1970) * 12 - 1


def test_redis_keeps_periods_for_a_while_and_all_time_for_ever() -> None:
    assert [ttl_s(p) for p in Period] == [2 * 86_400, 40 * 86_400, 400 * 86_400, None]
