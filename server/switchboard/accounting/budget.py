"""Spend in each budget window, answered locally in microseconds.

For each configured entity the mirror holds three amounts of its current
window:

    base     the window's shared total as Redis last answered it;
    unsent   this process's spend handed to Redis but not yet confirmed there;
    local    this process's spend since it was last handed over.

Spend in the window is their sum. `local` moves into `unsent` when a flush
drains it, `base` is replaced by what the flush reads back (which includes
what the same flush wrote), and `unsent` is recomputed from what really
is still pending after every flush, so a spend is never counted twice nor
missed by this process's own checks. Without Redis only `local` moves.

When the window rolls over, all three start again from 0: spend made in
the old window never counts against the new one, even if it reaches Redis
later (it goes to the old window's hash).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from switchboard.accounting.records import Dimension
from switchboard.accounting.tally import Entity
from switchboard.accounting.windows import BudgetWindow


class Tracker:
    __slots__ = ("base", "end", "local", "start", "unsent", "window", "window_id")

    def __init__(self, window: BudgetWindow) -> None:
        self.window = window
        self.window_id = ""
        self.start = 0.0
        self.end = 0.0  # rolls on first use
        self.base = 0.0
        self.unsent = 0.0
        self.local = 0.0

    def roll(self, wall: float) -> None:
        if self.start <= wall < self.end:
            return
        index = self.window.index(wall)
        self.window_id = self.window.id_of(index)
        self.start, self.end = self.window.bounds(wall)
        self.base = self.unsent = self.local = 0.0

    @property
    def spend(self) -> float:
        return self.base + self.unsent + self.local


class BudgetMirror:
    def __init__(self, windows: Mapping[Entity, BudgetWindow], *, shared: bool) -> None:
        """`shared`: spend goes to Redis, so deltas are kept for it in `fresh`."""
        self.trackers = {entity: Tracker(window) for entity, window in windows.items()}
        self.dimensions = frozenset(dimension for dimension, _ in windows)
        self._shared = shared
        # Spend not yet handed to Redis, by (window id, entity).
        self.fresh: dict[tuple[str, Entity], float] = {}
        self._ids: list[str] = []
        self._ids_valid = (math.inf, -math.inf)

    def add(self, entity: Entity, cost: float, wall: float) -> None:
        tracker = self.trackers.get(entity)
        if tracker is None or not cost:
            return
        tracker.roll(wall)
        tracker.local += cost
        if self._shared:
            key = (tracker.window_id, entity)
            self.fresh[key] = self.fresh.get(key, 0.0) + cost

    def spend(self, dimension: Dimension, name: str, wall: float) -> tuple[float, float]:
        """Spend in the current window and when it resets; KeyError when not configured."""
        tracker = self.trackers[(dimension, name)]
        tracker.roll(wall)
        return tracker.spend, tracker.end

    def drain(self) -> dict[tuple[str, Entity], float]:
        """Hands the spend recorded since the last drain to the caller, to send to Redis."""
        fresh, self.fresh = self.fresh, {}
        for _, entity in fresh:
            tracker = self.trackers[entity]
            tracker.unsent += tracker.local
            tracker.local = 0.0
        return fresh

    def settle(
        self,
        wall: float,
        unsent: Callable[[str, Entity], float],
        read: Mapping[str, Mapping[Entity, float]] | None,
    ) -> None:
        """After a flush: `unsent(window_id, entity)` is what is still pending, `read` the
        spend read back per window id (None when the flush failed; absent entities: 0)."""
        for entity, tracker in self.trackers.items():
            tracker.roll(wall)
            if read is not None:
                values = read.get(tracker.window_id)
                if values is not None:
                    tracker.base = values.get(entity, 0.0)
            tracker.unsent = unsent(tracker.window_id, entity)

    def roll(self, wall: float) -> None:
        for tracker in self.trackers.values():
            tracker.roll(wall)

    def window_ids(self, wall: float) -> list[str]:
        """The current windows' ids, to read back; recomputed only when one may have rolled."""
        if not self._ids_valid[0] <= wall < self._ids_valid[1]:
            self.roll(wall)
            self._ids = sorted({tracker.window_id for tracker in self.trackers.values()})
            starts = [tracker.start for tracker in self.trackers.values()]
            ends = [tracker.end for tracker in self.trackers.values()]
            self._ids_valid = (max(starts, default=0.0), min(ends, default=math.inf))
        return self._ids
