"""Type stubs for the native limiter (ratelimit-rs/src/python.rs)."""

from collections.abc import Iterable
from typing import Literal, final

__all__ = ["Denied", "Handle", "RateLimiter", "Ticket", "version"]

def version() -> str:
    """The native core's version."""

@final
class Handle:
    """A key of one limiter, resolved once: pass it to ``try_acquire`` in place
    of the key's name (alone, or among others in a tuple or list)."""

    @property
    def key(self) -> str:
        """The key's name."""

@final
class Ticket:
    """An admission: settle it once with ``commit`` or ``release``."""

    @property
    def tokens(self) -> int:
        """Tokens reserved on each key."""
    @property
    def settled(self) -> bool:
        """Whether the ticket was committed or released."""
    def __bool__(self) -> Literal[True]: ...

@final
class Denied:
    """A refusal: nothing was reserved. Falsy."""

    @property
    def key(self) -> str:
        """The key that refused with the longest wait."""
    @property
    def retry_after(self) -> float:
        """Seconds from ``now`` until the same request fits (``inf``: never)."""
    @property
    def retry_at(self) -> float:
        """The monotonic time at which it fits (``inf``: never)."""
    @property
    def never(self) -> bool:
        """More tokens than a key's limit: it never fits."""
    def __bool__(self) -> Literal[False]: ...

@final
class RateLimiter:
    """A sliding-window limiter of requests and tokens per key."""

    def __new__(cls, window_seconds: float = 60.0) -> RateLimiter: ...
    @property
    def window_seconds(self) -> float:
        """The window, in seconds."""
    @property
    def bucket_seconds(self) -> float:
        """The bucket width, in seconds: capacity is reused at most this late."""
    def now(self) -> float:
        """The limiter's clock now, in seconds (agrees with ``time.monotonic()``)."""
    def configure(self, key: str, rpm: int | None, tpm: int | None) -> None:
        """Set a key's limits per window (``None``: unlimited); history is kept."""
    def handle(self, key: str) -> Handle:
        """A handle of ``key``: name the key by it in ``try_acquire``, without
        hashing or comparing its name on every request. It means what the
        name means, whenever it is used (configured before or after, or never)."""
    def try_acquire(
        self, keys: Handle | Iterable[str | Handle], tokens: int, now: float | None = None
    ) -> Ticket | Denied:
        """Reserve one request and ``tokens`` on every key, or on none."""
    def commit(self, ticket: Ticket, actual_tokens: int, now: float | None = None) -> None:
        """Correct the reservation to the tokens really used."""
    def release(self, ticket: Ticket, now: float | None = None) -> None:
        """Refund the reservation entirely."""
    def headroom(self, key: str, now: float | None = None) -> tuple[int | None, int | None]:
        """Requests and tokens left on a key now (``None``: unlimited)."""
    def __len__(self) -> int: ...
