"""Calls in flight per deployment: least-busy routing and latency tie-breaks read it.

A stream counts until its last chunk, so a deployment busy with long streams
looks busy.
"""

from __future__ import annotations

from collections import Counter


class InFlight:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def started(self, deployment_id: str) -> None:
        self._counts[deployment_id] += 1

    def finished(self, deployment_id: str) -> None:
        left = self._counts[deployment_id] - 1
        if left < 0:
            raise ValueError(f"{deployment_id}: finished more calls than started")
        if left:
            self._counts[deployment_id] = left
        else:
            del self._counts[deployment_id]

    def __getitem__(self, deployment_id: str) -> int:
        return self._counts.get(deployment_id, 0)
