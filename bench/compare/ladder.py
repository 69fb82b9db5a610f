"""Which offered rates to try, and whether a step was sustained.

A step is sustained when nearly every call succeeded, nearly all the offered
calls completed in time (an open-loop client that falls behind drops calls
rather than slowing down, so completions below the offered rate mean
overload) and the tail stayed short. A system's sustained rate is its highest
sustained step.

The ladder climbs by `factor` from the start rate until a step fails, then
climbs again from the last sustained step in `fine_steps` smaller steps up to
that failure, so each system's rate is known within factor**(1/fine_steps)
without running every fine step from the bottom. When all the fine steps up
to the first failure hold, that failure may have been a hiccup: it is tried
once more, and the climb goes on if it holds this time. A first step that
fails makes the ladder go down instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.compare.loadgen import Step


@dataclass(frozen=True)
class Criteria:
    min_success: float = 0.999
    min_completed: float = 0.97
    # At zero upstream delay; the upstream's delay is added to it.
    max_p99_ms: float = 250.0


def shortfalls(step: Step, delay_ms: float, criteria: Criteria = Criteria()) -> list[str]:
    """Why `step` was not sustained; empty when it was."""
    if step.error:
        return [step.error]
    reasons = []
    if step.success_rate < criteria.min_success:
        reasons.append(f"success {step.success_rate:.2%} < {criteria.min_success:.1%}")
    completed = step.completed_rate / step.offered_rate if step.offered_rate else 0.0
    if completed < criteria.min_completed:
        reasons.append(f"completed {completed:.1%} of offered < {criteria.min_completed:.0%}")
    limit = criteria.max_p99_ms + delay_ms
    p99 = step.latency_ms.get("p99", math.inf)
    if p99 > limit:
        reasons.append(f"p99 {p99:.0f} ms > {limit:.0f} ms")
    return reasons


@dataclass(frozen=True)
class Plan:
    start: float
    cap: float = 4000.0
    factor: float = 2.0
    fine_steps: int = 4
    confirm: bool = True
    max_steps: int = 14
    floor: float = 1.0


def nice(rate: float) -> float:
    """`rate` to two significant figures, so the steps are readable."""
    if rate <= 0:
        return rate
    digits = 1 - math.floor(math.log10(rate))
    return float(round(rate, digits))


def climb(plan: Plan, attempt: Callable[[float], bool]) -> None:
    """Call `attempt(rate)` (True: sustained) along the ladder until it ends."""
    results: dict[float, list[bool]] = {}
    first_failure: float | None = None
    rate: float | None = nice(plan.start)
    while rate is not None and sum(map(len, results.values())) < plan.max_steps:
        held = attempt(rate)
        results.setdefault(rate, []).append(held)
        if not held and first_failure is None:
            first_failure = rate
        rate = _next(plan, results, first_failure)


def _next(
    plan: Plan, results: dict[float, list[bool]], first_failure: float | None
) -> float | None:
    held = [rate for rate, runs in results.items() if runs[-1]]
    best = max(held, default=None)
    failed = [
        rate for rate, runs in results.items() if not runs[-1] and (best is None or rate > best)
    ]
    lowest_failure = min(failed, default=None)
    if best is None:  # nothing held yet: go down
        assert lowest_failure is not None
        lower = nice(lowest_failure / plan.factor)
        return lower if lower >= plan.floor and lower < lowest_failure else None
    if lowest_failure is None:  # nothing failed above the best: go up
        return None if best >= plan.cap else min(plan.cap, nice(best * plan.factor))
    if plan.fine_steps > 0:
        finer = nice(best * plan.factor ** (1 / plan.fine_steps))
        if best < finer < lowest_failure * 0.99:
            return finer
    retry = plan.confirm and lowest_failure == first_failure and len(results[lowest_failure]) == 1
    return lowest_failure if retry else None
