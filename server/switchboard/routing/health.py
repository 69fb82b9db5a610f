"""Cooldowns and the ramp back: which deployments may take traffic now.

A deployment leaves the pool when it fails more than `allowed_fails`
retryable times inside `fail_window_s`, or at once when the provider asks
for a pause (a 429 carrying Retry-After): then for exactly that long. When
the pause ends it does not get the whole herd back at once: for `ramp_s` it
admits a share of the calls routed its way that grows linearly from
`ramp_floor` to all of them, so a recovering deployment is measured again
under light load before it is trusted with full load.

A group's only deployment is not cooled down by failure counting (LiteLLM
does the same): with nowhere else to go, cooling it would only turn
transient errors into certain ones. A provider's explicit pause still holds.

Replicas sharing Redis (`switchboard.replicas`) hand each other the
cooldowns they begin; `cool` applies one for the time it has left, as a
cooldown and not as failures, so it is not passed on again.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class HealthState(enum.Enum):
    # Members are singletons: identity hashing, in C, for the dicts keyed by them.
    __hash__ = object.__hash__

    HEALTHY = "healthy"
    COOLING_DOWN = "cooling_down"
    RAMPING = "ramping"


@dataclass(frozen=True, slots=True)
class HealthView:
    state: HealthState
    # Monotonic time the current cooldown ends (COOLING_DOWN) or ended (RAMPING).
    until: float | None = None
    # Share of routed calls the deployment accepts now (1.0 when healthy).
    share: float = 1.0
    # The pause is the provider's quota (Retry-After, headers), not failures.
    quota: bool = False


# Frozen: one view serves every healthy deployment, with nothing built per call.
_HEALTHY = HealthView(HealthState.HEALTHY)


@dataclass(slots=True)
class _Record:
    failures: deque[float]
    cooling_until: float | None = None
    quota: bool = False
    # The COOLING_DOWN view of this cooldown, built once: it changes only with the cooldown.
    cooling: HealthView | None = None


class DeploymentHealth:
    def __init__(
        self,
        clock: Callable[[], float],
        rng: random.Random,
        *,
        allowed_fails: int,
        cooldown_s: float,
        fail_window_s: float = 60.0,
        ramp_s: float = 10.0,
        ramp_floor: float = 0.1,
    ) -> None:
        if not 0.0 < ramp_floor <= 1.0:
            raise ValueError("ramp_floor must be in (0, 1]")
        self._clock = clock
        self._rng = rng
        self._allowed_fails = allowed_fails
        self._cooldown_s = cooldown_s
        self._fail_window_s = fail_window_s
        self._ramp_s = ramp_s
        self._ramp_floor = ramp_floor
        self._records: dict[str, _Record] = {}

    def _record(self, deployment_id: str) -> _Record:
        record = self._records.get(deployment_id)
        if record is None:
            record = self._records[deployment_id] = _Record(deque())
        return record

    def record_failure(
        self, deployment_id: str, *, retry_after: float | None = None, sole: bool = False
    ) -> float | None:
        """Count a retryable failure; returns the cooldown's end if one began."""
        now = self._clock()
        record = self._record(deployment_id)
        if retry_after is not None and retry_after > 0:
            return self._cool(record, now + retry_after, quota=True)
        failures = record.failures
        failures.append(now)
        while failures and failures[0] <= now - self._fail_window_s:
            failures.popleft()
        if not sole and len(failures) > self._allowed_fails and self._cooldown_s > 0:
            return self._cool(record, now + self._cooldown_s, quota=False)
        return None

    def pause(self, deployment_id: str, seconds: float) -> float:
        """Take a deployment out for `seconds`: its provider said it has nothing left."""
        return self._cool(self._record(deployment_id), self._clock() + seconds, quota=True)

    def cool(self, deployment_id: str, seconds: float, *, quota: bool) -> float:
        """A cooldown another replica began: applied as is, with no failure counted.

        A longer one already running is kept. Returns the cooldown's end.
        """
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be positive and finite, not {seconds!r}")
        return self._cool(self._record(deployment_id), self._clock() + seconds, quota=quota)

    def _cool(self, record: _Record, until: float, *, quota: bool) -> float:
        if record.cooling_until is None or until > record.cooling_until:
            record.cooling_until = until
            record.quota = quota
            record.cooling = None
        # A fresh count after the pause: old failures were already paid for.
        record.failures.clear()
        return record.cooling_until

    def view(self, deployment_id: str) -> HealthView:
        record = self._records.get(deployment_id)
        if record is None:
            return _HEALTHY
        until = record.cooling_until
        if until is None:
            return _HEALTHY
        now = self._clock()
        if now < until:
            cooling = record.cooling
            if cooling is None:
                cooling = record.cooling = HealthView(
                    HealthState.COOLING_DOWN, until, 0.0, record.quota
                )
            return cooling
        if self._ramp_s > 0 and now < until + self._ramp_s:
            progress = (now - until) / self._ramp_s
            share = self._ramp_floor + (1.0 - self._ramp_floor) * progress
            return HealthView(HealthState.RAMPING, until, share)
        record.cooling_until = None
        return _HEALTHY

    def admits(self, view: HealthView) -> bool:
        """One draw: does a deployment in this state take the call routed its way?"""
        if view.state is HealthState.HEALTHY:
            return True
        if view.state is HealthState.COOLING_DOWN:
            return False
        return self._rng.random() < view.share
