"""What the gateway tells the ledger about one finished call.

Plain values, built once per call by the gateway and never kept: the
ledger folds them into counters at once. Numbers are taken as reported
and cleaned on the way in (see `tally.py`), because a provider's usage is
input like any other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Dimension(enum.Enum):
    """What a figure is counted against."""

    # Members are singletons: identity hashing, in C, for the dicts keyed by them.
    __hash__ = object.__hash__

    KEY = "key"  # a caller key's configured name
    TEAM = "team"  # the `team` entry of the caller key's metadata
    GROUP = "model_group"
    DEPLOYMENT = "deployment"
    PROVIDER = "provider"  # a deployment's provider, e.g. "openai" (for provider budgets)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    deployment: str
    provider: str
    # "success" or an error kind such as "rate_limited", "timeout", "unavailable".
    outcome: str
    latency_s: float
    # Set on the attempt that answered.
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    # The model group the call asked for, after alias resolution.
    group: str
    # The caller key's name; None when the gateway has no keys.
    key: str | None
    team: str | None
    # "success" or the call's error kind ("budget_exceeded", "capacity_exhausted", ...).
    outcome: str
    # Wall time of the whole call.
    latency_s: float | None
    attempts: tuple[AttemptRecord, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    # What the call cost (0 for a cache hit).
    cost_usd: float = 0.0
    # What a cache hit saved: the cost of the stored answer.
    saved_usd: float = 0.0
    cache_hit: bool = False


SUCCESS = "success"
