"""Which strategy a config names: the one place that maps names to classes.

The composition root builds the shared collaborators (clock, rng, in-flight
counts, latency tracker, limiter headroom) once and hands them here, so the
gateway records latency into the same tracker the strategy reads.
`routing_strategy_args` apply to latency-based routing only (as in
LiteLLM); with any other strategy the config reports them as ignored, so a
LiteLLM file that carries them still loads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from switchboard.config import Deployment
from switchboard.routing.cost import CostBased
from switchboard.routing.latency import LatencyTracker, routing_from_args, tracker_from_args
from switchboard.routing.least_busy import LeastBusy
from switchboard.routing.load import InFlight
from switchboard.routing.round_robin import RoundRobin
from switchboard.routing.shuffle import SimpleShuffle
from switchboard.routing.strategy import Strategy
from switchboard.routing.usage import UsageBased

# Canonical names (config.ROUTING_STRATEGIES resolves aliases) and round-robin.
STRATEGY_NAMES = (
    "latency-based-routing",
    "least-busy",
    "simple-shuffle",
    "usage-based-routing",
    "cost-based-routing",
    "round-robin",
)


def latency_tracker_from_args(
    name: str, args: Mapping[str, Any], clock: Callable[[], float]
) -> LatencyTracker:
    """The latency tracker `routing_strategy_args` describe (LiteLLM's names accepted).

    Every strategy gets a tracker (latency is worth knowing for ListModels and
    traces); only latency-based routing is tuned by the args.
    """
    return tracker_from_args(args if name == "latency-based-routing" else {}, clock)


def check_strategy_args(name: str, args: Mapping[str, Any]) -> None:
    """Raises ValueError, naming the argument, when the config's args cannot build `name`."""
    if name == "latency-based-routing":
        tracker = tracker_from_args(args, time.monotonic)
        routing_from_args(args, tracker, InFlight(), random.Random())


def build_strategy(
    name: str,
    args: Mapping[str, Any],
    *,
    rng: random.Random,
    clock: Callable[[], float],
    load: InFlight,
    latency: LatencyTracker,
    headroom: Callable[[Deployment], tuple[int | None, int | None]],
) -> Strategy:
    """The strategy a config names; the composition root calls this once.

    `clock` is accepted so every strategy is built from the same inputs; the
    latency tracker carries its own.
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown routing strategy {name!r}; expected one of {STRATEGY_NAMES}")
    if name == "latency-based-routing":
        return routing_from_args(args, latency, load, rng)
    if name == "least-busy":
        return LeastBusy(load, rng)
    if name == "simple-shuffle":
        return SimpleShuffle(rng)
    if name == "usage-based-routing":
        return UsageBased(headroom, rng)
    if name == "cost-based-routing":
        return CostBased(rng)
    return RoundRobin()
