"""What the sync and asyncio clients share about one call: its metadata, its
deadline and whether a failure may be retried.

A call's deadline covers every attempt and every wait between them, so opt-in
retries can never make a call outlive the timeout its caller set: a wait that
would end past the deadline is not waited, the error is raised at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import RateLimited, SwitchboardError, Unavailable

# The least time an attempt is worth starting with: less, and it can only expire.
MIN_ATTEMPT_S = 0.05
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0

Metadata = tuple[tuple[str, str], ...]


def call_metadata(api_key: str | None) -> Metadata:
    """The key as `authorization: Bearer`, and the caller's trace context, if any."""
    pairs: list[tuple[str, str]] = []
    if api_key is not None:
        pairs.append(("authorization", f"Bearer {api_key}"))
    inject = _otel_inject()
    if inject is not None:
        carrier: dict[str, str] = {}
        inject(carrier)
        # gRPC metadata keys are lowercase; W3C's already are, other propagators' may not be.
        pairs.extend((k.lower(), v) for k, v in carrier.items())
    return tuple(pairs)


_inject: Callable[[dict[str, str]], None] | None = None
_inject_loaded = False


def _otel_inject() -> Callable[[dict[str, str]], None] | None:
    """OpenTelemetry's global propagator (W3C `traceparent` unless configured otherwise),
    imported on first use so that OpenTelemetry stays an optional dependency."""
    global _inject, _inject_loaded
    if not _inject_loaded:
        try:
            from opentelemetry import propagate
        except ImportError:
            _inject = None
        else:

            def inject(carrier: dict[str, str]) -> None:
                propagate.inject(carrier)

            _inject = inject
        _inject_loaded = True
    return _inject


def retry_delay(
    error: SwitchboardError, retry: int, rng: Callable[[], float] = random.random
) -> float | None:
    """Seconds to wait before retry number `retry` (0 for the first), None when pointless.

    RESOURCE_EXHAUSTED is retried only with a RetryInfo: without one, the
    gateway says waiting cannot help. UNAVAILABLE waits RetryInfo's delay
    when given, else backs off exponentially with jitter.
    """
    if isinstance(error, RateLimited):
        return error.retry_after
    if isinstance(error, Unavailable):
        if error.retry_after is not None:
            return error.retry_after
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**retry)
        return ceiling / 2 + rng() * ceiling / 2
    return None


@dataclass
class CallPolicy:
    """One call's deadline (absolute, on `clock`) and its retries left."""

    deadline: float | None
    retries: int
    clock: Callable[[], float] = time.monotonic
    retried: int = field(default=0)

    @classmethod
    def start(
        cls, timeout: float | None, retries: int, clock: Callable[[], float] = time.monotonic
    ) -> CallPolicy:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive seconds, or None for no deadline")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError("retries must be a non-negative int")
        return cls(None if timeout is None else clock() + timeout, retries, clock)

    def timeout(self) -> float | None:
        """What is left of the deadline for the next attempt."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.clock())

    def wait_before_retry(self, error: SwitchboardError) -> float | None:
        """How long to wait before retrying after `error`; None to raise it now."""
        if self.retried >= self.retries:
            return None
        delay = retry_delay(error, self.retried)
        if delay is None:
            return None
        left = self.timeout()
        if left is not None and delay + MIN_ATTEMPT_S > left:
            return None
        self.retried += 1
        return delay


def policy_for(
    params: Mapping[str, Any], default_timeout: float | None, default_retries: int
) -> CallPolicy:
    """The call's policy from its own `timeout`/`retries` when given, else the client's."""
    timeout = params.get("timeout")
    retries = params.get("retries")
    return CallPolicy.start(
        default_timeout if timeout is None else timeout,
        default_retries if retries is None else retries,
    )
