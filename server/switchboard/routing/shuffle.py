"""LiteLLM's `simple-shuffle`: random, weighted by `weight`, else rpm, else tpm.

A weight counts only when every candidate has one: with some missing there is
no fair share to give the others, so the next attribute (or uniform) is used.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import cast

from switchboard.config import Deployment
from switchboard.routing.strategy import CallKind, Decision


class SimpleShuffle:
    name = "simple-shuffle"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        for weights in (
            [d.weight for d in candidates],
            [d.rpm for d in candidates],
            [d.tpm for d in candidates],
        ):
            if None in weights:
                continue
            present = cast(list[float], weights)
            if sum(present) > 0:
                return Decision(self._rng.choices(candidates, weights=present, k=1)[0])
        return Decision(self._rng.choice(candidates))
