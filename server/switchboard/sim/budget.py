"""A tokens-per-minute budget over a rolling window, as OpenAI enforces TPM.

The point is the exact wait: a client (or the gateway's cooldown) that honours
Retry-After must be admitted at exactly that moment, so tests of cooldowns can step a
fake clock to the second the budget frees instead of polling.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_S = 60.0


class TokenBudget:
    """Admits token spends while the last `window_s` seconds hold at most `limit` tokens.

    An admitted spend counts until `window_s` after it was made. Times come from the
    caller (the simulator's injected clock), so the budget holds no clock of its own.
    """

    def __init__(self, limit: int, window_s: float = WINDOW_S) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.limit = limit
        self.window_s = window_s
        self._spends: deque[tuple[float, int]] = deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        while self._spends and self._spends[0][0] + self.window_s <= now:
            _, tokens = self._spends.popleft()
            self._used -= tokens

    def used(self, now: float) -> int:
        self._expire(now)
        return self._used

    def remaining(self, now: float) -> int:
        return self.limit - self.used(now)

    def reset_in(self, now: float) -> float:
        """Seconds until the whole window is free again (for x-ratelimit-reset-tokens)."""
        self._expire(now)
        if not self._spends:
            return 0.0
        return self._spends[-1][0] + self.window_s - now

    def try_spend(self, tokens: int, now: float) -> float | None:
        """Spend `tokens` now and return None, or spend nothing and return the wait.

        The wait is the exact number of seconds until enough earlier spends expire for
        this one to fit; `math.inf` when it can never fit because it exceeds the limit.
        """
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        if tokens > self.limit:
            return math.inf
        self._expire(now)
        excess = self._used + tokens - self.limit
        if excess <= 0:
            self._spends.append((now, tokens))
            self._used += tokens
            return None
        freed = 0
        for spent_at, spent in self._spends:
            freed += spent
            if freed >= excess:
                return spent_at + self.window_s - now
        raise AssertionError("unreachable: the window holds more than the excess")
