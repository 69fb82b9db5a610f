"""Reservations against the native limiter, settled exactly once.

The gateway reserves before every upstream attempt and must settle the
reservation on every path out of the attempt: `commit` with what the call
really used, or `release` when it never consumed anything. `Reservation`
makes the second settlement a no-op instead of an error, so a `finally`
that releases "whatever is still open" is always safe, and `open_count`
lets tests prove nothing was left open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from switchboard.config import Deployment
from switchboard.limits import Denied, RateLimiter, Ticket


def deployment_key(deployment_id: str) -> str:
    return f"deployment:{deployment_id}"


def caller_key(name: str) -> str:
    """A caller key's limiter key: by its name, which logs and QuotaFailure may show."""
    return f"key:{name}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The limiter said no; `retry_after` is exact (inf: this request never fits)."""

    key: str
    retry_after: float
    tokens: int

    @property
    def never(self) -> bool:
        return self.retry_after == float("inf")


class Reservation:
    __slots__ = ("_admission", "_ticket", "tokens")

    def __init__(self, admission: Admission, ticket: Ticket, tokens: int) -> None:
        self._admission = admission
        self._ticket = ticket
        self.tokens = tokens

    @property
    def settled(self) -> bool:
        return self._ticket.settled

    def commit(self, actual_tokens: int) -> None:
        """Correct the reservation to the tokens really used; no-op once settled."""
        if not self._ticket.settled:
            self._admission._settle(self._ticket, max(0, actual_tokens))

    def release(self) -> None:
        """Refund the whole reservation; no-op once settled."""
        if not self._ticket.settled:
            self._admission._settle(self._ticket, None)


class Admission:
    """The gateway's view of the limiter: keys per deployment, the gateway's clock."""

    def __init__(
        self,
        limiter: RateLimiter,
        deployments: Iterable[Deployment],
        clock: Callable[[], float],
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._open = 0
        for deployment in deployments:
            limiter.configure(deployment_key(deployment.id), deployment.rpm, deployment.tpm)

    @property
    def open_count(self) -> int:
        """Reservations taken and not yet settled."""
        return self._open

    def configure(self, key: str, rpm: int | None, tpm: int | None) -> None:
        self._limiter.configure(key, rpm, tpm)

    def try_reserve(
        self, deployment: Deployment, tokens: int, extra_keys: Sequence[str] = ()
    ) -> Reservation | Refusal:
        keys = [deployment_key(deployment.id), *extra_keys]
        result: Ticket | Denied = self._limiter.try_acquire(keys, tokens, self._clock())
        if isinstance(result, Denied):
            return Refusal(result.key, result.retry_after, tokens)
        self._open += 1
        return Reservation(self, result, tokens)

    def headroom(self, key: str) -> tuple[int | None, int | None]:
        return self._limiter.headroom(key, self._clock())

    def _settle(self, ticket: Ticket, actual_tokens: int | None) -> None:
        if actual_tokens is None:
            self._limiter.release(ticket, self._clock())
        else:
            self._limiter.commit(ticket, actual_tokens, self._clock())
        self._open -= 1
