"""Latency routing: follows a shift, explores epsilon, re-measures the stale, spreads ties."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from switchboard.config import Deployment
from switchboard.routing.latency import (
    LatencyRouting,
    LatencyTracker,
    routing_from_args,
    tracker_from_args,
)
from switchboard.routing.load import InFlight
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import FakeClock, deployment

COMPLETE = CallKind.COMPLETE
A, B, C = deployment("a"), deployment("b"), deployment("c")
ABC = (A, B, C)


class Setup:
    def __init__(self, seed: int = 7, **routing: float) -> None:
        self.clock = FakeClock()
        self.load = InFlight()
        self.tracker = LatencyTracker(self.clock)
        self.router = LatencyRouting(self.tracker, self.load, random.Random(seed), **routing)

    def measured(self, latencies: dict[str, float]) -> None:
        for id, seconds in latencies.items():
            self.tracker.record(id, COMPLETE, seconds)

    def run(self, calls: int, latencies: dict[str, float], step_s: float = 0.1) -> list[str]:
        """Sequential calls, each recording its deployment's latency from the table."""
        chosen = []
        for _ in range(calls):
            self.clock.advance(step_s)
            d = self.router.choose(ABC, COMPLETE).deployment
            self.tracker.record(d.id, COMPLETE, latencies[d.id])
            chosen.append(d.id)
        return chosen


def test_moves_to_the_new_fastest_within_a_bounded_number_of_calls() -> None:
    s = Setup()
    # A long history on a: the estimate must follow the shift, not average it away.
    before = s.run(1000, {"a": 1.0, "b": 2.0, "c": 3.0})
    assert Counter(before[100:])["a"] >= 800  # settled on a (epsilon aside)
    # a becomes the slowest, c the fastest.
    after = s.run(350, {"a": 3.0, "b": 2.0, "c": 0.5})
    # c is sampled only by exploration (one call in 30) and needs about three
    # samples to outweigh its history: 40 calls typically; 250 bounds 500 seeds.
    within = 250
    assert Counter(after[within : within + 100])["c"] >= 85
    assert Counter(after[within:])["a"] <= 10


def test_explores_an_epsilon_share_uniformly_and_marks_it() -> None:
    s = Setup(seed=11, epsilon=0.1)
    s.measured({"a": 1.0, "b": 2.0, "c": 3.0})
    explored: Counter[str] = Counter()
    exploited: Counter[str] = Counter()
    for _ in range(10_000):
        decision = s.router.choose(ABC, COMPLETE)
        (explored if decision.explored else exploited)[decision.deployment.id] += 1
    share = explored.total() / 10_000
    assert abs(share - 0.1) < 0.015
    assert set(exploited) == {"a"}
    # Exploration is uniform over all candidates, the best included.
    assert all(abs(explored[id] / explored.total() - 1 / 3) < 0.05 for id in "abc")


def test_epsilon_zero_never_explores_known_deployments() -> None:
    s = Setup(epsilon=0.0)
    s.measured({"a": 1.0, "b": 2.0, "c": 3.0})
    decisions = [s.router.choose(ABC, COMPLETE) for _ in range(1000)]
    assert {(d.deployment.id, d.explored) for d in decisions} == {("a", False)}


def test_a_stale_deployment_is_explored_again_while_others_are_fresh() -> None:
    s = Setup(epsilon=0.0)
    s.measured({"a": 1.0, "b": 2.0, "c": 0.5})
    # a and b keep being measured; c, once the fastest, is not for over a minute.
    for _ in range(61):
        s.clock.advance(1.0)
        s.measured({"a": 1.0, "b": 2.0})
    decision = s.router.choose(ABC, COMPLETE)
    assert (decision.deployment.id, decision.explored) == ("c", True)


def test_an_unknown_deployment_is_probed_first_but_not_piled_on() -> None:
    s = Setup(epsilon=0.0)
    s.measured({"a": 1.0, "b": 2.0})
    first = s.router.choose(ABC, COMPLETE)
    assert (first.deployment.id, first.explored) == ("c", True)
    s.load.started("c")  # the probe is in flight: a burst goes to the best known
    burst = [s.router.choose(ABC, COMPLETE) for _ in range(200)]
    assert {(d.deployment.id, d.explored) for d in burst} == {("a", False)}


def test_with_nothing_known_and_every_probe_in_flight_the_least_busy_waits() -> None:
    s = Setup(epsilon=0.0)
    for id, n in {"a": 2, "b": 1, "c": 3}.items():
        for _ in range(n):
            s.load.started(id)
    decisions = [s.router.choose(ABC, COMPLETE) for _ in range(50)]
    assert {(d.deployment.id, d.explored) for d in decisions} == {("b", True)}


def test_near_ties_go_to_the_least_busy() -> None:
    s = Setup(epsilon=0.0, tie_tolerance=0.1)
    s.measured({"a": 1.0, "b": 1.08, "c": 1.5})
    s.load.started("a")
    s.load.started("a")
    s.load.started("b")
    assert {s.router.choose(ABC, COMPLETE).deployment.id for _ in range(100)} == {"b"}


def test_outside_the_tolerance_speed_wins_over_load() -> None:
    s = Setup(epsilon=0.0, tie_tolerance=0.1)
    s.measured({"a": 1.0, "b": 1.12, "c": 1.5})
    for _ in range(5):
        s.load.started("a")
    assert {s.router.choose(ABC, COMPLETE).deployment.id for _ in range(100)} == {"a"}


def test_equally_busy_near_ties_are_broken_at_random() -> None:
    s = Setup(epsilon=0.0)
    s.measured({"a": 1.0, "b": 1.05, "c": 1.5})
    counts = Counter(s.router.choose(ABC, COMPLETE).deployment.id for _ in range(1000))
    assert counts["c"] == 0
    assert 400 < counts["a"] < 600


def test_the_same_seed_makes_the_same_choices() -> None:
    runs = [Setup(seed=3).run(200, {"a": 1.0, "b": 1.05, "c": 3.0}) for _ in range(2)]
    assert runs[0] == runs[1]


def test_stream_choices_read_time_to_first_token() -> None:
    s = Setup(epsilon=0.0)
    s.measured({"a": 1.0, "b": 2.0, "c": 3.0})
    for id, ttft in {"a": 0.9, "b": 0.2, "c": 0.5}.items():
        s.tracker.record(id, CallKind.STREAM, ttft)
    assert s.router.choose(ABC, CallKind.STREAM).deployment.id == "b"
    assert s.router.choose(ABC, COMPLETE).deployment.id == "a"


@pytest.mark.parametrize(("field", "value"), [("epsilon", 1.5), ("tie_tolerance", -0.1)])
def test_rejects_settings_that_cannot_work(field: str, value: float) -> None:
    tracker = LatencyTracker(FakeClock())
    with pytest.raises(ValueError, match=field):
        LatencyRouting(tracker, InFlight(), random.Random(1), **{field: value})


# --- routing_strategy_args ---------------------------------------------------


def _choose_all(router: LatencyRouting, candidates: tuple[Deployment, ...]) -> set[str]:
    return {router.choose(candidates, COMPLETE).deployment.id for _ in range(200)}


def test_litellm_names_configure_the_tracker() -> None:
    clock = FakeClock()
    tracker = tracker_from_args(
        {"ttl": 5, "max_latency_list_size": 2, "half_life_s": 1.0, "lowest_latency_buffer": 0.5},
        clock,
    )
    for seconds in (100.0, 1.0, 3.0):
        tracker.record("a", COMPLETE, seconds)  # window 2: 100 is gone
    assert tracker.estimate("a", COMPLETE) == 2.0
    clock.advance(5.5)  # ttl 5
    assert tracker.estimate("a", COMPLETE) is None


def test_lowest_latency_buffer_is_the_tie_tolerance() -> None:
    clock = FakeClock()
    tracker = tracker_from_args({}, clock)
    tracker.record("a", COMPLETE, 1.0)
    tracker.record("b", COMPLETE, 1.4)
    load = InFlight()
    load.started("a")
    wide = routing_from_args(
        {"lowest_latency_buffer": 0.5, "epsilon": 0.0}, tracker, load, random.Random(1)
    )
    narrow = routing_from_args(
        {"lowest_latency_buffer": 0.2, "epsilon": 0.0}, tracker, load, random.Random(1)
    )
    assert _choose_all(wide, (A, B)) == {"b"}
    assert _choose_all(narrow, (A, B)) == {"a"}


def test_per_output_token_arg_reaches_the_tracker() -> None:
    tracker = tracker_from_args({"per_output_token": True}, FakeClock())
    tracker.record("a", COMPLETE, 2.0, output_tokens=4)
    assert tracker.estimate("a", COMPLETE) == 0.5


def test_unknown_args_are_named() -> None:
    with pytest.raises(ValueError, match="'lowest_latency_bufer'"):
        tracker_from_args({"lowest_latency_bufer": 0.1}, FakeClock())
    tracker = tracker_from_args({}, FakeClock())
    with pytest.raises(ValueError, match="'explore'"):
        routing_from_args({"explore": 0.1}, tracker, InFlight(), random.Random(1))


@pytest.mark.parametrize(
    "args", [{"ttl": "60"}, {"max_latency_list_size": 2.5}, {"per_output_token": 1}]
)
def test_tracker_args_of_the_wrong_type_are_refused(args: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(args))):
        tracker_from_args(args, FakeClock())


@pytest.mark.parametrize("args", [{"epsilon": True}, {"lowest_latency_buffer": "0.1"}])
def test_routing_args_of_the_wrong_type_are_refused(args: dict[str, object]) -> None:
    tracker = tracker_from_args(args, FakeClock())
    with pytest.raises(ValueError, match=next(iter(args))):
        routing_from_args(args, tracker, InFlight(), random.Random(1))
