"""Calendar periods in UTC: the current hour, day and month, and all time.

Every period boundary is an hour boundary (Unix time has no leap seconds
and UTC no offsets), so a period is known from the hour's index
`floor(wall / 3600)` alone. The hot path computes only that index; the
calendar is read when counters are folded and written, off the hot path.

Period ids are ISO-like and sort as time does: `2026-12-03T10` (hour),
`2026-12-03` (day), `2026-12` (month), `all` (total).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

HOUR_S = 3600


class Period(enum.Enum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"


def ttl_s(period: Period) -> int | None:
    """How long Redis keeps a period's hash after its last write.

    Long enough to read a period after it ended, bounded so that old
    periods do not pile up; all time is kept for ever.
    """
    if period is Period.HOUR:
        return 2 * 86_400
    if period is Period.DAY:
        return 40 * 86_400
    if period is Period.MONTH:
        return 400 * 86_400
    return None


def hour_index(wall: float) -> int:
    return int(wall // HOUR_S)


def period_id(period: Period, hour: int) -> str:
    """The id of the period holding hour `hour` (an index from `hour_index`)."""
    if period is Period.TOTAL:
        return "all"
    t = datetime.fromtimestamp(hour * HOUR_S, UTC)
    if period is Period.HOUR:
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}"
    if period is Period.DAY:
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    return f"{t.year:04d}-{t.month:02d}"


def period_start(period: Period, hour: int) -> float | None:
    """Wall seconds at which the period holding `hour` began; None for all time."""
    if period is Period.TOTAL:
        return None
    t = datetime.fromtimestamp(hour * HOUR_S, UTC)
    if period is Period.DAY:
        t = t.replace(hour=0)
    elif period is Period.MONTH:
        t = t.replace(day=1, hour=0)
    return t.timestamp()


def month_index(wall: float) -> int:
    """Months since 1970-01 (UTC), negative before it.

    Read from the hour's index, which is floored exactly, rather than from
    `wall` itself, which datetime would round to the microsecond.
    """
    t = datetime.fromtimestamp(hour_index(wall) * HOUR_S, UTC)
    return (t.year - 1970) * 12 + t.month - 1


def month_start(index: int) -> float:
    """Wall seconds at which month `index` (months since 1970-01) begins."""
    year, month = divmod(index, 12)
    return datetime(1970 + year, month + 1, 1, tzinfo=UTC).timestamp()
