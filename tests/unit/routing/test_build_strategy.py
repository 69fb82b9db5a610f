"""build_strategy: every configured name to its class; unknown names and args refused."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from switchboard.config import ROUTING_STRATEGIES
from switchboard.routing.latency import LatencyTracker
from switchboard.routing.load import InFlight
from switchboard.routing.strategies import (
    build_strategy,
    check_strategy_args,
    latency_tracker_from_args,
)
from switchboard.routing.strategy import CallKind, Strategy
from tests.unit.routing.fakes import FakeClock, deployment


def _build(name: str, args: Mapping[str, Any] | None = None, **parts: Any) -> Strategy:
    clock = parts.pop("clock", FakeClock())
    return build_strategy(
        name,
        args or {},
        rng=random.Random(1),
        clock=clock,
        load=parts.pop("load", InFlight()),
        latency=parts.pop("latency", LatencyTracker(clock)),
        headroom=lambda d: (None, None),
    )


@pytest.mark.parametrize("name", [*sorted(set(ROUTING_STRATEGIES.values())), "round-robin"])
def test_every_canonical_name_builds_the_strategy_of_that_name(name: str) -> None:
    strategy = _build(name)
    assert strategy.name == name
    d = deployment("a")
    assert strategy.choose((d,), CallKind.COMPLETE).deployment is d


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="'fastest'"):
        _build("fastest")


def test_latency_routing_reads_the_tracker_and_load_it_is_given() -> None:
    clock = FakeClock()
    tracker = latency_tracker_from_args("latency-based-routing", {"ttl": 30}, clock)
    load = InFlight()
    strategy = _build(
        "latency-based-routing", {"epsilon": 0.0}, clock=clock, latency=tracker, load=load
    )
    a, b = deployment("a"), deployment("b")
    tracker.record("a", CallKind.COMPLETE, 2.0)
    tracker.record("b", CallKind.COMPLETE, 1.0)
    assert strategy.choose((a, b), CallKind.COMPLETE).deployment is b
    load.started("b")
    tracker.record("b", CallKind.COMPLETE, 2.8)  # b at 1.9: a near-tie, the idle one wins
    assert strategy.choose((a, b), CallKind.COMPLETE).deployment is a


def test_unknown_latency_args_are_named() -> None:
    with pytest.raises(ValueError, match="'buffer'"):
        _build("latency-based-routing", {"buffer": 0.2})
    with pytest.raises(ValueError, match="'buffer'"):
        latency_tracker_from_args("latency-based-routing", {"buffer": 0.2, "ttl": 5}, FakeClock())
    with pytest.raises(ValueError, match="'buffer'"):
        check_strategy_args("latency-based-routing", {"buffer": 0.2})
    with pytest.raises(ValueError, match="epsilon"):
        check_strategy_args("latency-based-routing", {"epsilon": "lots"})


@pytest.mark.parametrize("name", ["least-busy", "simple-shuffle", "cost-based-routing"])
def test_args_given_to_a_strategy_without_any_are_left_alone(name: str) -> None:
    # LiteLLM files may carry them; the config reports them as ignored.
    check_strategy_args(name, {"ttl": 5})
    assert _build(name, {"ttl": 5}).name == name
    tracker = latency_tracker_from_args(name, {"ttl": 5, "anything": 1}, FakeClock())
    assert isinstance(tracker, LatencyTracker)
