"""Fault kinds and the per-profile rates at which the simulator injects them.

A routing layer is only as good as its behaviour when upstreams misbehave, so the
simulator can misbehave on purpose in every way a real OpenAI-compatible upstream does.
Each request draws at most one fault with a single uniform draw from the injected RNG,
so a seeded simulator fails the same requests on every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidProfileError


class FaultKind(StrEnum):
    """How one request goes wrong; the values are the `x-sim-fault` header values."""

    RATE_LIMIT = "rate_limit"
    """429 with `Retry-After` and `retry-after-ms`."""
    SERVER_ERROR = "server_error"
    """500."""
    UNAVAILABLE = "unavailable"
    """503."""
    TIMEOUT = "timeout"
    """No response at all until the client gives up."""
    CONNECTION_RESET = "connection_reset"
    """The socket is reset before any response byte."""
    MID_STREAM_DROP = "mid_stream_drop"
    """The response starts, then the connection closes after a few chunks."""
    CONTEXT_WINDOW = "context_window"
    """400 `context_length_exceeded`, worded as OpenAI words it."""
    CONTENT_POLICY = "content_policy"
    """400 `content_policy_violation`."""
    AUTHENTICATION = "authentication"
    """401 `invalid_api_key`: the provider refuses the gateway's own key."""


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability of each fault per request, and the knobs that shape the faults.

    Rates are independent fields rather than a mapping so that a profile file with a
    misspelt kind fails to load instead of silently injecting nothing.
    """

    rate_limit: float = 0.0
    server_error: float = 0.0
    unavailable: float = 0.0
    timeout: float = 0.0
    connection_reset: float = 0.0
    mid_stream_drop: float = 0.0
    context_window: float = 0.0
    content_policy: float = 0.0
    authentication: float = 0.0
    retry_after_s: float = 1.0
    """What an injected 429 asks the client to wait."""
    drop_after_chunks: int = 3
    """Chunks (or, without streaming, body fragments) sent before a mid-stream drop."""
    hang_s: float = 3600.0
    """How long a timeout fault hangs; longer than any sane client timeout."""

    def __post_init__(self) -> None:
        for kind in FaultKind:
            rate = self.rate(kind)
            if not 0.0 <= rate <= 1.0:
                raise InvalidProfileError(kind.value, f"must be in [0, 1], got {rate}")
        if self.total() > 1.0 + 1e-9:
            raise InvalidProfileError("faults", f"rates add up to {self.total():.6g}, more than 1")
        if self.retry_after_s < 0:
            raise InvalidProfileError("retry_after_s", "must be >= 0")
        if self.drop_after_chunks < 0:
            raise InvalidProfileError("drop_after_chunks", "must be >= 0")
        if self.hang_s <= 0:
            raise InvalidProfileError("hang_s", "must be > 0")

    def rate(self, kind: FaultKind) -> float:
        rate: float = getattr(self, kind.value)
        return rate

    def total(self) -> float:
        return sum(self.rate(kind) for kind in FaultKind)

    def draw(self, rng: random.Random) -> FaultKind | None:
        """Pick the fault for one request, or None for a healthy response.

        A fault-free profile consumes nothing from the RNG, so adding the simulator's
        fault machinery does not perturb the content of seeded healthy profiles.
        """
        if self.total() == 0.0:
            return None
        draw = rng.random()
        cumulative = 0.0
        for kind in FaultKind:
            cumulative += self.rate(kind)
            if draw < cumulative:
                return kind
        return None
