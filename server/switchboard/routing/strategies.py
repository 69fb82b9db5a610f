"""Routing strategies: given eligible deployments, pick one.

Every strategy implements one method; the random source is injected so a
seeded test sees the same choices every run.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Protocol

from switchboard.config import Deployment

log = logging.getLogger(__name__)


class Strategy(Protocol):
    name: str

    def choose(self, candidates: Sequence[Deployment]) -> Deployment:
        """One of `candidates` (never empty)."""
        ...


class SimpleShuffle:
    """LiteLLM's `simple-shuffle`: random, weighted by `weight`, else rpm, else tpm."""

    name = "simple-shuffle"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[Deployment]) -> Deployment:
        for attribute in ("weight", "rpm", "tpm"):
            weights = [getattr(d, attribute) for d in candidates]
            if all(w is not None for w in weights):
                return self._rng.choices(candidates, weights=weights, k=1)[0]
        return self._rng.choice(candidates)


def build_strategy(name: str, rng: random.Random) -> Strategy:
    """The strategy a config names; the composition root calls this once."""
    if name != SimpleShuffle.name:
        log.warning("routing strategy %r is not implemented yet; routing with simple-shuffle", name)
    return SimpleShuffle(rng)
