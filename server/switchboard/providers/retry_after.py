"""Reading how long a provider asked us to wait, from its response headers.

Providers say it several ways: `retry-after-ms` (OpenAI, Azure), the
standard `retry-after` in seconds or as an HTTP date, and OpenAI's
`x-ratelimit-reset-requests`/`-tokens` durations such as `1m30s` or `250ms`.

Headers are the provider's input, not ours: NaN, infinities, negative
numbers and garbage are ignored (None), and every wait is capped at
`MAX_RETRY_AFTER_S`, so no value read here can overflow a timestamp or a
duration downstream. Routing caps waits further by its own configuration.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable, Mapping

from switchboard.domain import RateLimitHint
from switchboard.errors import MAX_RETRY_AFTER_S

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# A header longer than this is not a wait or a count (and is not worth scanning).
_MAX_VALUE_CHARS = 64
# Remaining-request and -token counts above this are garbage, not headroom.
MAX_REMAINING = 2**53


def parse_retry_after(headers: Mapping[str, str], now_epoch: Callable[[], float]) -> float | None:
    """Seconds to wait, or None when the headers do not say (or say nonsense).

    `now_epoch` gives wall-clock seconds, needed only for the HTTP-date form;
    a date already past means "now" (0.0).
    """
    lowered = {
        k.lower(): v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)
    }
    if (value := lowered.get("retry-after-ms")) is not None:
        millis = _number(value)
        if millis is not None:
            return _capped(millis / 1000.0)
    if (value := lowered.get("retry-after")) is not None:
        seconds = _number(value)
        if seconds is not None:
            return _capped(seconds)
        dated = _http_date(value, now_epoch)
        if dated is not None:
            return dated
    resets = [
        parse_duration(v)
        for k in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (v := lowered.get(k)) is not None
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitHint | None:
    """What a successful response says is left of the provider's own limits.

    OpenAI-style `x-ratelimit-remaining-*` / `x-ratelimit-reset-*`; litellm
    re-exposes them with an `llm_provider-` prefix, which is accepted too.
    """
    lowered = {
        name.removeprefix("llm_provider-"): v
        for k, v in headers.items()
        if isinstance(k, str) and isinstance(v, str) and "x-ratelimit-" in (name := k.lower())
    }
    if not lowered:  # most answers: no hint to build
        return None

    def count(name: str) -> int | None:
        value = lowered.get(name)
        number = _number(value) if value is not None else None
        return int(min(number, MAX_REMAINING)) if number is not None else None

    def reset(name: str) -> float | None:
        value = lowered.get(name)
        return parse_duration(value) if value is not None else None

    hint = RateLimitHint(
        requests_remaining=count("x-ratelimit-remaining-requests"),
        tokens_remaining=count("x-ratelimit-remaining-tokens"),
        requests_reset_s=reset("x-ratelimit-reset-requests"),
        tokens_reset_s=reset("x-ratelimit-reset-tokens"),
    )
    return None if hint == RateLimitHint() else hint


def parse_duration(text: str) -> float | None:
    """`1m30s`, `250ms`, `6.5s` or a bare number of seconds, capped; None when not one."""
    text = text.strip()
    if len(text) > _MAX_VALUE_CHARS:
        return None
    number = _number(text)
    if number is not None:
        return _capped(number)
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match["value"]) * _UNIT_S[match["unit"]]
        pos = match.end()
    return _capped(total) if pos == len(text) and pos > 0 and math.isfinite(total) else None


def _number(text: str) -> float | None:
    """A finite, non-negative number, or None (NaN, infinities, negatives, garbage)."""
    if len(text) > _MAX_VALUE_CHARS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _capped(seconds: float) -> float:
    return min(seconds, MAX_RETRY_AFTER_S)


def _http_date(text: str, now_epoch: Callable[[], float]) -> float | None:
    if len(text) > _MAX_VALUE_CHARS:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
        target = parsed.timestamp() if parsed.tzinfo is not None else None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if target is None or not math.isfinite(target):
        return None
    return _capped(max(0.0, target - now_epoch()))
