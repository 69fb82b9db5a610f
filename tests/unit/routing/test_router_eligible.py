"""Who may take a call: every deployment kept out is kept out, and said why."""

from __future__ import annotations

import random

import pytest

from switchboard.config import Deployment
from switchboard.routing import (
    DeploymentHealth,
    Eligible,
    InFlight,
    LatencyTracker,
    Router,
    SimpleShuffle,
)
from tests.unit.routing.fakes import FakeClock, deployment

A, B, C = deployment("a"), deployment("b", max_input_tokens=100), deployment("c")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def router(clock: FakeClock, paused: dict[str, float] | None = None) -> Router:
    pauses = paused if paused is not None else {}

    def paused_until(d: Deployment) -> float | None:
        return pauses.get(d.id)

    return Router(
        groups={"g": (A, B, C)},
        strategy=SimpleShuffle(random.Random(0)),
        health=DeploymentHealth(
            clock, random.Random(0), allowed_fails=0, cooldown_s=30.0, ramp_s=10.0, ramp_floor=1.0
        ),
        load=InFlight(),
        latency=LatencyTracker(clock),
        paused=paused_until,
    )


def test_with_nothing_kept_out_the_whole_group_is_eligible_in_order(clock: FakeClock) -> None:
    r = router(clock)
    for _ in range(2):  # the second call answers as the first did
        assert r.eligible("g", exclude=(), prompt_tokens=10) == Eligible((A, B, C), None, True, ())


def test_each_reason_keeps_its_deployment_out(clock: FakeClock) -> None:
    pauses: dict[str, float] = {}
    r = router(clock, pauses)
    assert r.eligible("g", exclude={"a"}, prompt_tokens=10).candidates == (B, C)
    assert r.eligible("g", exclude=(), prompt_tokens=101) == Eligible((A, C), None, True, (B,))
    r.pause(C, 5.0)
    assert r.eligible("g", exclude=(), prompt_tokens=10) == Eligible((A, B), 1005.0, True, ())
    pauses["a"] = 1003.0
    assert r.eligible("g", exclude=(), prompt_tokens=10) == Eligible((B,), 1003.0, True, ())


def test_a_cooldown_that_ended_lets_the_whole_group_back(clock: FakeClock) -> None:
    r = router(clock)
    r.failed(A, retry_after=None)  # no failure allowed: 30 s off
    assert r.eligible("g", exclude=(), prompt_tokens=10) == Eligible((B, C), 1030.0, False, ())
    clock.advance(30.0)  # ramping, at a floor of 1: every call admitted
    assert r.eligible("g", exclude=(), prompt_tokens=10).candidates == (A, B, C)
    clock.advance(10.0)
    assert r.eligible("g", exclude=(), prompt_tokens=10) == Eligible((A, B, C), None, True, ())
