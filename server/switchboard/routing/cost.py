"""Cost-based routing: the cheapest deployment per token.

Price is input plus output cost per token: the ratio of input to output
tokens is not known before the call, and the sum orders the usual cases
(same-shaped price lists) correctly. A deployment without both prices ranks
last: choosing it could cost anything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from switchboard.config import Deployment
from switchboard.routing.strategy import CallKind, Decision


class CostBased:
    name = "cost-based-routing"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        prices = [(_price(d), d) for d in candidates]
        cheapest = min(price for price, _ in prices)
        return Decision(self._rng.choice([d for price, d in prices if price == cheapest]))


def _price(deployment: Deployment) -> float:
    if deployment.input_cost_per_token is None or deployment.output_cost_per_token is None:
        return math.inf
    return deployment.input_cost_per_token + deployment.output_cost_per_token
