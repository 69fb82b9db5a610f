"""Cooldowns other replicas began: applied for the time they have left, not as failures."""

from __future__ import annotations

import math
import random

import pytest

from switchboard.routing.health import DeploymentHealth, HealthState
from tests.unit.routing.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def health(clock: FakeClock, **kwargs: float) -> DeploymentHealth:
    return DeploymentHealth(clock, random.Random(0), allowed_fails=1, cooldown_s=30.0, **kwargs)


def test_a_cooldown_holds_for_the_seconds_given_then_ramps(clock: FakeClock) -> None:
    h = health(clock, ramp_s=10.0)
    assert h.cool("a", 12.5, quota=True) == 1012.5
    view = h.view("a")
    assert (view.state, view.until, view.quota) == (HealthState.COOLING_DOWN, 1012.5, True)
    clock.advance(12.5)
    assert h.view("a").state is HealthState.RAMPING


def test_a_longer_cooldown_running_is_kept(clock: FakeClock) -> None:
    h = health(clock)
    h.pause("a", 30.0)
    assert h.cool("a", 5.0, quota=False) == 1030.0
    assert h.view("a").quota  # still the longer one's kind
    assert h.cool("a", 40.0, quota=False) == 1040.0
    assert not h.view("a").quota


def test_no_failure_is_counted(clock: FakeClock) -> None:
    h = health(clock)
    h.record_failure("a")  # one: allowed
    h.cool("a", 1.0, quota=False)
    clock.advance(1.0 + 10.0 + 1.0)  # past the cooldown and the ramp
    # The count started afresh: one more failure is allowed again.
    assert h.record_failure("a") is None
    assert h.view("a").state is HealthState.HEALTHY


def test_a_sole_deployment_takes_another_replicas_cooldown(clock: FakeClock) -> None:
    # Failure counting spares a group's only deployment; a cooldown decided elsewhere
    # (a quota pause, or failures where it is not alone) holds.
    h = health(clock)
    h.cool("a", 5.0, quota=True)
    assert h.view("a").state is HealthState.COOLING_DOWN


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.inf, math.nan])
def test_rejects_a_cooldown_of_no_finite_time(clock: FakeClock, seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        health(clock).cool("a", seconds, quota=False)
