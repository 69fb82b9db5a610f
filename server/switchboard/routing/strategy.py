"""The one interface every routing strategy implements.

A strategy sees only eligible candidates (not cooling down, with limiter
headroom for the reservation, with a context window large enough): the
gateway filters first, so strategies rank and never police. Whatever a
strategy reads about deployments (latency, load, headroom, price) it gets
from collaborators handed to its constructor, so each one is a small module
tested with a fake clock and a seeded RNG.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from switchboard.config import Deployment


class CallKind(enum.Enum):
    """Latency of a whole call and time to first token are different quantities."""

    # Members are singletons: identity hashing, in C, for the dicts keyed by them.
    __hash__ = object.__hash__

    COMPLETE = "complete"
    STREAM = "stream"


@dataclass(frozen=True, slots=True)
class Decision:
    deployment: Deployment
    # True when the strategy chose for exploration rather than by its ranking.
    explored: bool = False


class Strategy(Protocol):
    name: str

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        """One of `candidates` (never empty)."""
        ...
