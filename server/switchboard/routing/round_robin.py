"""Round-robin: each deployment in turn, by id; the bench's naive baseline.

The cursor is the last id chosen, not a position, so a deployment leaving or
joining the candidates (cooldown, headroom) does not reset or skip the cycle.
One cursor per model group: groups share no deployments, so they would only
disturb each other's turns.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.config import Deployment
from switchboard.routing.strategy import CallKind, Decision


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        ordered = sorted(candidates, key=lambda d: d.id)
        group = ordered[0].model_group
        last = self._last.get(group)
        chosen = next((d for d in ordered if last is None or d.id > last), ordered[0])
        self._last[group] = chosen.id
        return Decision(chosen)
