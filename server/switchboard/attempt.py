"""One attempt at a deployment: its reservation, in-flight count and span, settled together.

An attempt holds three things that must all be given back however it ends:
the limiter reservation, the router's in-flight count and the telemetry
span. `AttemptScope` is their one owner. The gateway enters it around the
provider call (for a stream, around the whole stream), and every way out
settles all three:

- success: the gateway commits the usage it learnt (`commit`);
- the provider answered with a refusal (an error status, a malformed body,
  no connection) and nothing was delivered: released;
- a timeout or a cancel once the call was under way: the provider most
  likely counted the request and its prompt, so those are committed.
  Releasing them would let a caller slip past its key's rpm with short
  deadlines and leave our count of the deployment below the provider's;
- a stream that ends early after delivering: the prompt and what was
  delivered are committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from switchboard.config import Deployment
from switchboard.errors import ProviderError, UpstreamTimeout
from switchboard.limits.admission import Reservation
from switchboard.telemetry.recorder import AttemptSpan


@dataclass(frozen=True, slots=True)
class Counts:
    """The router's in-flight bookkeeping, as the scope needs it."""

    started: Callable[[Deployment], None]
    finished: Callable[[Deployment], None]


class AttemptScope:
    """An attempt in progress; `async with` it around the provider call."""

    __slots__ = (
        "_clock",
        "_counts",
        "_span_done",
        "candidates",
        "delivered",
        "deployment",
        "depth",
        "explored",
        "model_group",
        "prompt_tokens",
        "reservation",
        "span",
        "started",
        "streaming",
        "timeout_s",
    )

    def __init__(
        self,
        *,
        deployment: Deployment,
        model_group: str,
        depth: int,
        reservation: Reservation,
        prompt_tokens: int,
        explored: bool,
        candidates: tuple[str, ...],
        timeout_s: float,
        span: AttemptSpan,
        counts: Counts,
        clock: Callable[[], float],
    ) -> None:
        self.deployment = deployment
        self.model_group = model_group
        # How far down the fallback chain this attempt's group is (0: the group asked for).
        self.depth = depth
        self.reservation = reservation
        self.prompt_tokens = prompt_tokens
        self.explored = explored
        self.candidates = candidates
        self.timeout_s = timeout_s
        self.span = span
        self.started = 0.0
        # Upstream pieces delivered to the caller (streams); about a token each.
        self.delivered = 0
        # The caller has its first chunk: the attempt can no longer fall back.
        self.streaming = False
        self._counts = counts
        self._clock = clock
        self._span_done = False

    async def __aenter__(self) -> AttemptScope:
        self.started = self._clock()
        self._counts.started(self.deployment)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._counts.finished(self.deployment)
        if exc is not None and not self._span_done:
            self.span.failed(exc)
        if self.reservation.settled:
            return
        if exc is None:
            # Left without a verdict: charge what was reserved, never less.
            self.reservation.commit(self.reservation.tokens)
        elif self.delivered:
            self.reservation.commit(self.prompt_tokens + self.delivered)
        elif isinstance(exc, ProviderError) and not isinstance(exc, UpstreamTimeout):
            self.reservation.release()
        else:
            # A timeout, a cancel or a fault of ours while the request was out.
            self.reservation.commit(self.prompt_tokens)

    def commit(self, tokens: int) -> None:
        """The call consumed `tokens` (prompt and output): settle the reservation with them."""
        self.reservation.commit(tokens)

    def span_ended(self) -> None:
        """The span was ended with the answer; a failure after it must not end it again."""
        self._span_done = True

    def elapsed(self) -> float:
        return self._clock() - self.started
