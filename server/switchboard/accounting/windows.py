"""Budget windows from LiteLLM's `budget_duration` strings.

`30s`, `10m`, `24h`, `1d`, `7d`, `2w` are fixed lengths, and their windows
are aligned to the Unix epoch (window `floor(wall / length)`); `Nmo` is N
calendar months in UTC, aligned to months since 1970-01. Either way every
process computes the same window from the wall clock alone, so windows
start and reset together everywhere without any shared state.

LiteLLM's words (`hourly`, `daily`, `weekly`, `monthly`) read as LiteLLM
reads them: 1h, 24h, 7d and 30d (not a calendar month). Anything else,
zero-length windows, and windows over a century are refused with a
ValueError naming the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType

from switchboard.accounting.periods import month_index, month_start

_UNIT_S = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800})
_WORDS = MappingProxyType({"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"})
_PATTERN = re.compile(r"([0-9]+)(mo|s|m|h|d|w)")
_MAX_S = 100 * 366 * 86_400
_MAX_MONTHS = 1200
_MIN_TTL_S = 3600
_MONTH_S = 31 * 86_400


@dataclass(frozen=True, slots=True)
class BudgetWindow:
    """A budget's reset cycle; `BudgetWindow("1d")`.

    Two windows are equal when they cut time the same way (`24h` == `1d`),
    whatever they were written as.
    """

    duration: str = field(compare=False)
    seconds: int = field(init=False)  # 0 for calendar months
    months: int = field(init=False)  # 0 for fixed lengths

    def __post_init__(self) -> None:
        text = _WORDS.get(self.duration.strip().lower(), self.duration)
        match = _PATTERN.fullmatch(text)
        if match is None:
            raise ValueError(
                f"budget duration {self.duration!r}: expected a number and one of "
                "s, m, h, d, w, mo (for example 30s, 24h, 7d, 1mo)"
            )
        count, unit = int(match[1]), match[2]
        months = count if unit == "mo" else 0
        seconds = 0 if unit == "mo" else count * _UNIT_S[unit]
        if count <= 0 or seconds > _MAX_S or months > _MAX_MONTHS:
            raise ValueError(f"budget duration {self.duration!r}: must be between 1s and 100 years")
        object.__setattr__(self, "seconds", seconds)
        object.__setattr__(self, "months", months)

    def index(self, wall: float) -> int:
        """The window holding `wall`, numbered from the epoch's."""
        if self.seconds:
            return int(wall // self.seconds)
        return month_index(wall) // self.months

    def bounds(self, wall: float) -> tuple[float, float]:
        """Wall seconds at which the window holding `wall` starts and resets."""
        index = self.index(wall)
        if self.seconds:
            return float(index * self.seconds), float((index + 1) * self.seconds)
        return month_start(index * self.months), month_start((index + 1) * self.months)

    def window_id(self, wall: float) -> str:
        """Names the window holding `wall`: the same in every process, e.g. `86400s:20425`."""
        return self.id_of(self.index(wall))

    def id_of(self, index: int) -> str:
        if self.seconds:
            return f"{self.seconds}s:{index}"
        return f"{self.months}mo:{index}"

    def resets_at(self, wall: float) -> float:
        """Wall seconds of the next reset after `wall`."""
        return self.bounds(wall)[1]

    @property
    def ttl_s(self) -> int:
        """How long Redis keeps a window's spend: twice its length, at least an hour."""
        length = self.seconds or self.months * _MONTH_S
        return max(_MIN_TTL_S, 2 * length)
