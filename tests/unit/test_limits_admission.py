"""Admission over the native limiter: keys by handle, names and clock as before."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pytest

from switchboard.config import Deployment, parse_settings
from switchboard.limits import Denied, Handle, RateLimiter, Ticket
from switchboard.limits.admission import (
    Admission,
    Refusal,
    Reservation,
    caller_key,
    deployment_key,
)
from tests.unit.fakes import FakeClock


def _deployments() -> dict[str, Deployment]:
    text = """
model_list:
  - {model_name: m, litellm_params: {model: openai/a, rpm: 2, tpm: 1000}, model_info: {id: a}}
  - {model_name: m, litellm_params: {model: openai/b}, model_info: {id: b}}
"""
    settings = parse_settings(text, source="test", env={})
    return {d.id: d for d in settings.deployments}


class Recording:
    """A RateLimiter that notes how each call named its keys and its time."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.acquired: list[tuple[Any, float | None]] = []
        self.settled: list[float | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.limiter, name)

    def try_acquire(self, keys: Any, tokens: int, now: float | None = None) -> Ticket | Denied:
        self.acquired.append((keys, now))
        return self.limiter.try_acquire(keys, tokens, now)

    def commit(self, ticket: Ticket, actual_tokens: int, now: float | None = None) -> None:
        self.settled.append(now)
        self.limiter.commit(ticket, actual_tokens, now)

    def release(self, ticket: Ticket, now: float | None = None) -> None:
        self.settled.append(now)
        self.limiter.release(ticket, now)


def _admission(
    clock: Any, deployments: Iterable[Deployment]
) -> tuple[Admission, Recording, RateLimiter]:
    limiter = RateLimiter(60.0)
    recording = Recording(limiter)
    return Admission(recording, deployments, clock), recording, limiter  # type: ignore[arg-type]


def test_deployments_are_reserved_by_handle_and_refused_by_name() -> None:
    deployments = _deployments()
    clock = FakeClock()
    admission, recording, limiter = _admission(clock, deployments.values())
    first = admission.try_reserve(deployments["a"], 400)
    assert isinstance(first, Reservation)
    keys, now = recording.acquired[-1]
    assert isinstance(keys, Handle)
    assert keys.key == deployment_key("a")
    assert now == clock.now
    first.commit(300)
    assert admission.headroom(deployment_key("a")) == (1, 700)
    refusal = admission.try_reserve(deployments["a"], 701)
    assert isinstance(refusal, Refusal)
    assert refusal.key == deployment_key("a")
    assert (refusal.tokens, refusal.never) == (701, False)
    assert refusal.retry_after == pytest.approx(60.0, abs=0.1)
    assert admission.open_count == 0
    assert recording.settled == [clock.now]
    # The unlimited deployment is configured too, and a handle as well.
    assert isinstance(admission.try_reserve(deployments["b"], 10**9), Reservation)
    assert len(limiter) == 2


def test_caller_keys_configured_here_go_by_handle_others_by_name() -> None:
    deployments = _deployments()
    admission, recording, limiter = _admission(FakeClock(), deployments.values())
    caller = caller_key("team-a")
    admission.configure(caller, None, 500)
    reservation = admission.try_reserve(deployments["b"], 300, (caller, "key:unknown"))
    assert isinstance(reservation, Reservation)
    keys, _ = recording.acquired[-1]
    assert isinstance(keys, tuple)
    assert [type(k) for k in keys] == [Handle, Handle, str]
    assert keys[2] == "key:unknown"
    refusal = admission.try_reserve(deployments["b"], 300, (caller,))
    assert isinstance(refusal, Refusal)
    assert refusal.key == caller  # the gateway compares it with extra_keys
    assert refusal.key in (caller,)
    reservation.release()
    assert isinstance(admission.try_reserve(deployments["b"], 300, (caller,)), Reservation)
    # A key configured on the limiter behind the admission's back still counts.
    limiter.configure("key:unknown", 1, None)
    assert isinstance(admission.try_reserve(deployments["b"], 1, ("key:unknown",)), Reservation)
    refusal = admission.try_reserve(deployments["b"], 1, ("key:unknown",))
    assert isinstance(refusal, Refusal)
    assert refusal.key == "key:unknown"


def test_reconfiguring_a_caller_key_keeps_its_reservations_and_its_handle() -> None:
    deployments = _deployments()
    admission, recording, _ = _admission(FakeClock(), deployments.values())
    caller = caller_key("team-a")
    admission.configure(caller, 5, None)
    assert isinstance(admission.try_reserve(deployments["b"], 1, (caller,)), Reservation)
    first_handle = recording.acquired[-1][0][1]
    admission.configure(caller, 1, None)
    refusal = admission.try_reserve(deployments["b"], 1, (caller,))
    assert isinstance(refusal, Refusal)
    assert refusal.key == caller
    assert recording.acquired[-1][0][1] is first_handle
    assert admission.open_count == 1


def test_a_deployment_it_was_not_built_with_is_unlimited_by_handle() -> None:
    deployments = _deployments()
    admission, recording, limiter = _admission(FakeClock(), [deployments["a"]])
    assert isinstance(admission.try_reserve(deployments["b"], 10**12), Reservation)
    assert isinstance(recording.acquired[-1][0], Handle)
    assert len(limiter) == 1


def test_with_the_monotonic_clock_the_limiter_reads_it_itself() -> None:
    deployments = _deployments()
    admission, recording, _ = _admission(time.monotonic, deployments.values())
    reservation = admission.try_reserve(deployments["a"], 400)
    assert isinstance(reservation, Reservation)
    assert recording.acquired[-1][1] is None
    reservation.commit(100)
    assert recording.settled == [None]
    assert admission.headroom(deployment_key("a")) == (1, 900)
    other = admission.try_reserve(deployments["a"], 100)
    assert isinstance(other, Reservation)
    refusal = admission.try_reserve(deployments["a"], 1)
    assert isinstance(refusal, Refusal)
    assert 59.0 < refusal.retry_after <= 60.0 + 60.0 / 1024
    other.release()
    other.release()  # a no-op once settled
    assert admission.open_count == 0
