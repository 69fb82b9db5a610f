"""The router tells an observer of its own cooldowns and kept samples, and only of those."""

from __future__ import annotations

import random
from typing import Any

import pytest

from switchboard.routing import (
    CallKind,
    DeploymentHealth,
    InFlight,
    LatencyTracker,
    Router,
    SimpleShuffle,
)
from tests.unit.routing.fakes import FakeClock, deployment

A, B, SOLE = deployment("a"), deployment("b"), deployment("sole", group="alone")
COMPLETE, STREAM = CallKind.COMPLETE, CallKind.STREAM


class Observer:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def cooled(self, deployment_id: str, until: float, quota: bool) -> None:
        self.events.append(("cooled", deployment_id, until, quota))

    def measured(
        self, deployment_id: str, kind: CallKind, seconds: float, output_tokens: int | None
    ) -> None:
        self.events.append(("measured", deployment_id, kind, seconds, output_tokens))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def router(
    clock: FakeClock, observer: Observer | None, *, per_output_token: bool = False
) -> Router:
    health = DeploymentHealth(clock, random.Random(0), allowed_fails=1, cooldown_s=30.0)
    return Router(
        groups={"g": (A, B), "alone": (SOLE,)},
        strategy=SimpleShuffle(random.Random(0)),
        health=health,
        load=InFlight(),
        latency=LatencyTracker(clock, per_output_token=per_output_token),
        observer=observer,
    )


def test_cooldowns_begun_here_are_reported(clock: FakeClock) -> None:
    observer = Observer()
    r = router(clock, observer)
    assert r.pause(A, 20.0) == 1020.0
    assert r.failed(B, retry_after=5.0) == 1005.0
    assert r.failed(SOLE, retry_after=None) is None  # a sole deployment is not cooled
    assert r.failed(SOLE, retry_after=None) is None
    assert observer.events == [("cooled", "a", 1020.0, True), ("cooled", "b", 1005.0, True)]


def test_failure_counting_reports_only_when_a_cooldown_begins(clock: FakeClock) -> None:
    observer = Observer()
    r = router(clock, observer)
    assert r.failed(A, retry_after=None) is None
    assert observer.events == []
    assert r.failed(A, retry_after=None) == 1030.0
    assert observer.events == [("cooled", "a", 1030.0, False)]


def test_a_longer_cooldown_running_is_reported_as_it_is(clock: FakeClock) -> None:
    observer = Observer()
    r = router(clock, observer)
    r.failed(A, retry_after=None)
    r.failed(A, retry_after=None)  # 30 s, failures
    r.pause(A, 5.0)  # shorter: the failures' cooldown stands
    assert observer.events[-1] == ("cooled", "a", 1030.0, False)


def test_kept_samples_are_reported(clock: FakeClock) -> None:
    observer = Observer()
    r = router(clock, observer, per_output_token=True)
    r.succeeded(A, COMPLETE, 2.0, 100)
    r.succeeded(A, STREAM, 0.25, None)
    r.failed(B, retry_after=None, seconds=9.0, kind=STREAM)  # a timeout
    r.failed(B, retry_after=None, seconds=9.0)  # kept by no tracker: no count per token
    assert observer.events == [
        ("measured", "a", COMPLETE, 2.0, 100),
        ("measured", "a", STREAM, 0.25, None),
        ("measured", "b", STREAM, 9.0, None),
        ("cooled", "b", 1030.0, False),
    ]


def test_without_an_observer_the_router_works_alike(clock: FakeClock) -> None:
    watched, plain = router(clock, Observer()), router(clock, None)
    for r in (watched, plain):
        r.pause(A, 20.0)
        r.succeeded(B, COMPLETE, 1.0, 10)
        r.failed(B, retry_after=None, seconds=2.0)
    for r in (watched, plain):
        assert r.health(A).until == 1020.0
        assert r.eligible("g", exclude=(), prompt_tokens=0).candidates == (B,)
