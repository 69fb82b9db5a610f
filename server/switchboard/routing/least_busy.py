"""Least-busy routing: the deployment with the fewest calls in flight.

Blind to speed, so it suits deployments that are alike; a stream counts
until its last chunk, so long streams make a deployment look busy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from switchboard.config import Deployment
from switchboard.routing.load import InFlight
from switchboard.routing.strategy import CallKind, Decision


class LeastBusy:
    name = "least-busy"

    def __init__(self, load: InFlight, rng: random.Random) -> None:
        self._load = load
        self._rng = rng

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        fewest = min(self._load[d.id] for d in candidates)
        # Ties are random: the first in config order would take every idle-time call.
        return Decision(self._rng.choice([d for d in candidates if self._load[d.id] == fewest]))
