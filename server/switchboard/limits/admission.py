"""Reservations against the native limiter, settled exactly once.

The gateway reserves before every upstream attempt and must settle the
reservation on every path out of the attempt: `commit` with what the call
really used, or `release` when it never consumed anything. `Reservation`
makes the second settlement a no-op instead of an error, so a `finally`
that releases "whatever is still open" is always safe, and `open_count`
lets tests prove nothing was left open.

Keys are named to the limiter by `Handle`, resolved once per key this
admission configures (every deployment, and each caller key passed to
`configure`), so a reservation neither formats nor hashes key names; a key
it never configured is passed by name, so no string a caller sends can grow
memory. With the production clock, `time.monotonic`, the limiter reads that
same clock itself instead of being handed a float.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from switchboard.config import Deployment
from switchboard.limits import Denied, Handle, RateLimiter, Ticket


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


class Settleable(Protocol):
    """What a reservation holds: the native `Ticket`, or a shared admission's pair of tickets."""

    @property
    def settled(self) -> bool: ...


class Reservation:
    __slots__ = ("_admission", "_ticket", "tokens")

    def __init__(self, admission: Admission, ticket: Settleable, tokens: int) -> None:
        self._admission = admission
        self._ticket = ticket
        self.tokens = tokens

    @property
    def settled(self) -> bool:
        return self._ticket.settled

    def commit(self, actual_tokens: int) -> None:
        """Correct the reservation to the tokens really used; no-op once settled."""
        ticket = self._ticket
        if not ticket.settled:
            self._admission._settle(ticket, actual_tokens if actual_tokens > 0 else 0)

    def release(self) -> None:
        """Refund the whole reservation; no-op once settled."""
        ticket = self._ticket
        if not ticket.settled:
            self._admission._settle(ticket, None)


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
        # The limiter's own clock agrees with time.monotonic(): read it there.
        self._reads_clock = clock is time.monotonic
        self._open = 0
        # Handles of the keys configured here, by key and by deployment id.
        self._handles: dict[str, Handle] = {}
        self._deployments: dict[str, Handle] = {}
        for deployment in deployments:
            key = deployment_key(deployment.id)
            self.configure(key, deployment.rpm, deployment.tpm)
            self._deployments[deployment.id] = self._handles[key]

    @property
    def open_count(self) -> int:
        """Reservations taken and not yet settled."""
        return self._open

    def configure(self, key: str, rpm: int | None, tpm: int | None) -> None:
        self._limiter.configure(key, rpm, tpm)
        if key not in self._handles:
            self._handles[key] = self._limiter.handle(key)

    async def start(self) -> None:
        """Nothing to start in one process; a shared admission connects here."""

    async def aclose(self) -> None:
        """Nothing to flush in one process; a shared admission settles what is pending."""

    async def reserve(
        self, deployment: Deployment, tokens: int, extra_keys: Sequence[str] = ()
    ) -> Reservation | Refusal:
        """The gateway's entry: `try_reserve` here, a round trip to Redis when shared."""
        return self.try_reserve(deployment, tokens, extra_keys)

    def try_reserve(
        self, deployment: Deployment, tokens: int, extra_keys: Sequence[str] = ()
    ) -> Reservation | Refusal:
        result = self._acquire(deployment, tokens, extra_keys)
        if isinstance(result, Refusal):
            return result
        self._open += 1
        return Reservation(self, result, tokens)

    def _acquire(
        self, deployment: Deployment, tokens: int, extra_keys: Sequence[str]
    ) -> Ticket | Refusal:
        """The native limiter's decision: a ticket not yet counted as open, or a refusal."""
        handle = self._deployments.get(deployment.id)
        if handle is None:  # not one of the deployments this admission was built with
            handle = self._deployments[deployment.id] = self._limiter.handle(
                deployment_key(deployment.id)
            )
        keys: Handle | tuple[Handle | str, ...] = handle
        if extra_keys:
            # Each key by its handle when configured here, else by its name.
            keys = (handle, *[self._handles.get(key, key) for key in extra_keys])
        result: Ticket | Denied = self._limiter.try_acquire(keys, tokens, self._now())
        if isinstance(result, Denied):
            return Refusal(result.key, result.retry_after, tokens)
        return result

    def headroom(self, key: str) -> tuple[int | None, int | None]:
        return self._limiter.headroom(key, self._now())

    def _now(self) -> float | None:
        """The time to pass the limiter: None when it reads the same clock itself."""
        return None if self._reads_clock else self._clock()

    def _settle(self, settleable: Settleable, actual_tokens: int | None) -> None:
        ticket = cast(Ticket, settleable)
        now = self._now()
        if actual_tokens is None:
            self._limiter.release(ticket, now)
        else:
            self._limiter.commit(ticket, actual_tokens, now)
        self._open -= 1
