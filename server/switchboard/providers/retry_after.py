"""Reading how long a provider asked us to wait, from its response headers.

Providers say it several ways: `retry-after-ms` (OpenAI, Azure), the
standard `retry-after` in seconds or as an HTTP date, and OpenAI's
`x-ratelimit-reset-requests`/`-tokens` durations such as `1m30s` or `250ms`.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping

from switchboard.domain import RateLimitHint

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_retry_after(headers: Mapping[str, str], now_epoch: Callable[[], float]) -> float | None:
    """Seconds to wait, or None when the headers do not say.

    `now_epoch` gives wall-clock seconds, needed only for the HTTP-date form.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if (value := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    if (value := lowered.get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return max(0.0, parsed.timestamp() - now_epoch())
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
        k.lower().removeprefix("llm_provider-"): v
        for k, v in headers.items()
        if isinstance(k, str) and isinstance(v, str)
    }

    def count(name: str) -> int | None:
        value = lowered.get(name)
        try:
            return max(0, int(float(value))) if value is not None else None
        except ValueError:
            return None

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
    """`1m30s`, `250ms`, `6.5s` or a bare number of seconds."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match["value"]) * _UNIT_S[match["unit"]]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None
