"""This process's own figures for the current hour, day, month and all time.

Recording writes one tally per hour (`tally.py`); the book folds those
tallies into each period when asked (a snapshot, a flush, or an hour
ending), off the hot path. A tally of an hour older than a period's
current one (the clock stepped back) is not folded into that period: the
period it belongs to has been dropped already.

Folding is also where names are made safe to keep: cleaned of what UTF-8
cannot carry, cut at `fields.MAX_NAME` characters, and bounded in number per
dimension (`max_names`, 10 000 by default); names beyond the bound, and error kinds
beyond MAX_KINDS, are counted under OTHER, so memory and Redis fields stay
bounded whatever the callers send.
"""

from __future__ import annotations

from switchboard.accounting.fields import clean
from switchboard.accounting.periods import Period, period_id, period_start
from switchboard.accounting.records import Dimension
from switchboard.accounting.tally import Counters, Tally

OTHER = "(other)"
MAX_KINDS = 256


class Names:
    """Raw names to the names kept, at most `limit` distinct ones; the rest are OTHER."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: dict[str, str] = {}

    def __call__(self, raw: str) -> str:
        name = self._kept.get(raw)
        if name is None:
            if len(self._kept) >= self._limit:
                return OTHER
            name = self._kept[raw] = clean(raw)
        return name


class _Figures:
    __slots__ = ("id", "start", "tally")

    def __init__(self, id_: str, start: float | None) -> None:
        self.id = id_
        self.start = start
        self.tally: Tally = {}


class Book:
    def __init__(self, max_names: int = 10_000) -> None:
        self._names = {dimension: Names(max_names) for dimension in Dimension}
        self._kinds = Names(MAX_KINDS)
        self._periods: dict[Period, _Figures] = {}

    def canonical(self, raw: Tally) -> Tally:
        """`raw` with names and error kinds as they are kept (see the module docstring)."""
        tally: Tally = {}
        for (dimension, raw_name), counters in raw.items():
            entity = (dimension, self._names[dimension](raw_name))
            if counters.errors:
                errors: dict[str, int] = {}
                for raw_kind, count in counters.errors.items():
                    kind = self._kinds(raw_kind)
                    errors[kind] = errors.get(kind, 0) + count
                counters.errors = errors
            if entity in tally:
                tally[entity].merge(counters)
            else:
                tally[entity] = counters
        return tally

    def fold(self, hour: int, tally: Tally) -> None:
        """Adds a canonical tally of hour `hour` into every period holding that hour."""
        for period in Period:
            start = period_start(period, hour)
            figures = self._periods.get(period)
            if figures is None or _before(figures.start, start):
                figures = self._periods[period] = _Figures(period_id(period, hour), start)
            elif _before(start, figures.start):
                continue
            for entity, counters in tally.items():
                kept = figures.tally.get(entity)
                if kept is None:
                    kept = figures.tally[entity] = Counters()
                kept.merge(counters)

    def figures(self, period: Period, hour: int) -> Tally:
        """The period holding `hour`, as folded so far; empty when nothing was folded into it."""
        figures = self._periods.get(period)
        if figures is None or figures.id != period_id(period, hour):
            return {}
        return figures.tally


def _before(a: float | None, b: float | None) -> bool:
    """Whether period start `a` is earlier than `b` (all time has none, and is never earlier)."""
    return a is not None and b is not None and a < b
