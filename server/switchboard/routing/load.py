"""Calls in flight per deployment: least-busy routing and latency tie-breaks read it.

A stream counts until its last chunk, so a deployment busy with long streams
looks busy.
"""

from __future__ import annotations


class InFlight:
    def __init__(self) -> None:
        # A plain dict, not a Counter: an absent id costs no __missing__ call.
        self._counts: dict[str, int] = {}

    def started(self, deployment_id: str) -> None:
        counts = self._counts
        counts[deployment_id] = counts.get(deployment_id, 0) + 1

    def finished(self, deployment_id: str) -> None:
        counts = self._counts
        left = counts.get(deployment_id, 0) - 1
        if left < 0:
            raise ValueError(f"{deployment_id}: finished more calls than started")
        if left:
            counts[deployment_id] = left
        else:
            del counts[deployment_id]

    def __getitem__(self, deployment_id: str) -> int:
        return self._counts.get(deployment_id, 0)
