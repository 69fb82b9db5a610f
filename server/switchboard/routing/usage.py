"""Usage-based routing: the deployment with the most limiter headroom left.

Headroom is compared as the fraction of each limit left, so a small
deployment at half its limit ranks with a large one at half of its own,
and calls spread in proportion to capacity. Tokens rank first (they run out
first under LLM traffic), requests break ties; an unlimited quantity ranks
above any limited one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from switchboard.config import Deployment
from switchboard.routing.strategy import CallKind, Decision

# (requests left, tokens left) in the current window; None: unlimited.
Headroom = Callable[[Deployment], tuple[int | None, int | None]]


class UsageBased:
    name = "usage-based-routing"

    def __init__(self, headroom: Headroom, rng: random.Random) -> None:
        self._headroom = headroom
        self._rng = rng

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        ranked = [(self._rank(d), d) for d in candidates]
        best = max(rank for rank, _ in ranked)
        return Decision(self._rng.choice([d for rank, d in ranked if rank == best]))

    def _rank(self, deployment: Deployment) -> tuple[float, float]:
        requests_left, tokens_left = self._headroom(deployment)
        return (
            _fraction(tokens_left, deployment.tpm),
            _fraction(requests_left, deployment.rpm),
        )


def _fraction(left: int | None, limit: int | None) -> float:
    if left is None:
        return math.inf
    if not limit:
        # Limited by something other than the deployment's own limit (none is
        # configured): no fraction to take, so only "any left" counts.
        return 1.0 if left > 0 else 0.0
    return left / limit
