"""Shared test doubles for the routing strategies: a stepped clock and deployments."""

from __future__ import annotations

from typing import Any

from switchboard.config import Deployment
from tests.unit import fakes


class FakeClock(fakes.FakeClock):
    """The shared fake clock, started at 1000 s so ages and staleness are exact."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)


def deployment(id: str, group: str = "g", **fields: Any) -> Deployment:
    """A deployment with every optional field unset unless given."""
    values: dict[str, Any] = {
        "id": id,
        "model_group": group,
        "model": f"openai/{id}",
        "provider": "openai",
        "params": {},
        "rpm": None,
        "tpm": None,
        "timeout_s": 60.0,
        "stream_timeout_s": 60.0,
        "weight": None,
        "max_input_tokens": None,
        "max_output_tokens": None,
        "input_cost_per_token": None,
        "output_cost_per_token": None,
    }
    values.update(fields)
    return Deployment(**values)
