"""Budgets: spend allowed per caller key, team and provider, checked before any upstream call.

LiteLLM's names and semantics: `max_budget` over `budget_duration` for keys
and teams, `provider_budget_config` (`budget_limit` over `time_period`) for
providers. Spend comes from the ledger's local mirror (accounting/), so a
check is a few dictionary reads and never a round trip.

A key or team is refused when the call *would* go over: what it has spent
in the window, plus what its calls in flight may still cost, plus what this
call may cost at most (its prompt and its output reservation at the dearest
price of its group), must fit. Calls in flight hold their estimate until
they end, so concurrent calls cannot all squeeze through the last dollar.
Spend in other processes arrives with the ledger's flushes; a fallback to a
dearer group can still overshoot by one call, which the next call sees.

A provider at or over its budget is skipped by routing as if it were cooling
down until its window resets: what it would cost is unknown until a
deployment is chosen, and the other providers may well serve the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from switchboard.accounting.records import Dimension
from switchboard.config import Budget, Deployment, Settings
from switchboard.domain import Caller
from switchboard.errors import BudgetExceeded

Entity = tuple[Dimension, str]


class SpendWindows(Protocol):
    """What the guard reads of the ledger: spend in an entity's budget window, and its reset."""

    def window_spend(self, dimension: Dimension, name: str) -> tuple[float, float]: ...


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget as GetStats shows it."""

    dimension: Dimension
    name: str
    budget: Budget
    spend_usd: float
    # Wall seconds of the next reset; None for a budget over all time.
    resets_at: float | None

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.budget.max_usd - self.spend_usd)


class BudgetHold:
    """The estimates a call holds against its budgets until it ends; release is idempotent."""

    __slots__ = ("_amounts", "_guard")

    def __init__(self, guard: BudgetGuard, amounts: tuple[tuple[Entity, float], ...]) -> None:
        self._guard = guard
        self._amounts = amounts

    def release(self) -> None:
        amounts, self._amounts = self._amounts, ()
        for entity, amount in amounts:
            self._guard._unhold(entity, amount)


def budget_entities(settings: Settings) -> dict[Entity, Budget]:
    """Every budget the config sets: keys', teams' and providers'."""
    budgets: dict[Entity, Budget] = {
        (Dimension.KEY, k.name): k.budget for k in settings.keys if k.budget is not None
    }
    budgets.update({(Dimension.TEAM, n): b for n, b in settings.teams.items()})
    budgets.update({(Dimension.PROVIDER, n): b for n, b in settings.provider_budgets.items()})
    return budgets


class BudgetGuard:
    def __init__(
        self,
        budgets: Mapping[Entity, Budget],
        *,
        spend: SpendWindows,
        wall: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        """`budgets` as `budget_entities` gives them; `spend` keeps a window for each."""
        self._budgets = dict(budgets)
        self._has_callers = any(d is not Dimension.PROVIDER for d, _ in self._budgets)
        self._providers = {n for d, n in self._budgets if d is Dimension.PROVIDER}
        self._spend = spend
        self._wall = wall
        self._clock = clock
        self._held: dict[Entity, float] = {}

    def admit(self, caller: Caller | None, estimate_usd: float) -> BudgetHold | None:
        """Hold `estimate_usd` against the caller's key and team budgets, or raise BudgetExceeded.

        None when the caller has no budget: nothing to release.
        """
        if caller is None or not self._has_callers:
            return None
        entities = [(Dimension.KEY, caller.name)]
        if caller.team is not None:
            entities.append((Dimension.TEAM, caller.team))
        estimate = estimate_usd if math.isfinite(estimate_usd) and estimate_usd > 0 else 0.0
        held: list[tuple[Entity, float]] = []
        for entity in entities:
            budget = self._budgets.get(entity)
            if budget is None:
                continue
            spent, resets_at = self._spend.window_spend(*entity)
            in_flight = self._held.get(entity, 0.0)
            if spent >= budget.max_usd or spent + in_flight + estimate > budget.max_usd:
                raise self._refusal(entity, budget, spent, in_flight, estimate, resets_at)
            held.append((entity, estimate))
        if not held:
            return None
        for entity, amount in held:
            self._held[entity] = self._held.get(entity, 0.0) + amount
        return BudgetHold(self, tuple(held))

    def provider_paused_until(self, provider: str) -> float | None:
        """On the monotonic clock, when a provider over its budget may be used again; else None."""
        if provider not in self._providers:
            return None
        entity = (Dimension.PROVIDER, provider)
        spent, resets_at = self._spend.window_spend(*entity)
        if spent < self._budgets[entity].max_usd:
            return None
        return self._clock() + max(0.0, resets_at - self._wall())

    def deployment_paused_until(self, deployment: Deployment) -> float | None:
        """For routing: a deployment whose provider is over budget waits like a cooldown."""
        return self.provider_paused_until(deployment.provider)

    def line(self, dimension: Dimension, name: str) -> BudgetLine | None:
        budget = self._budgets.get((dimension, name))
        if budget is None:
            return None
        spent, resets_at = self._spend.window_spend(dimension, name)
        return BudgetLine(
            dimension, name, budget, spent, None if budget.duration is None else resets_at
        )

    def _unhold(self, entity: Entity, amount: float) -> None:
        left = self._held.get(entity, 0.0) - amount
        if left <= 1e-12:
            self._held.pop(entity, None)
        else:
            self._held[entity] = left

    def _refusal(
        self,
        entity: Entity,
        budget: Budget,
        spent: float,
        in_flight: float,
        estimate: float,
        resets_at: float,
    ) -> BudgetExceeded:
        dimension, name = entity
        subject = f"budget:{dimension.value}:{name}"
        period = f"per {budget.duration}" if budget.duration else "in all"
        never = budget.duration is None or estimate > budget.max_usd
        wait = None if never else max(0.0, resets_at - self._wall())
        if spent >= budget.max_usd:
            why = f"has spent ${spent:.6f} of its ${budget.max_usd:.6f} {period}"
        else:
            held = f" (calls in flight hold ${in_flight:.6f})" if in_flight else ""
            why = (
                f"has ${budget.max_usd - spent - in_flight:.6f} of its ${budget.max_usd:.6f} "
                f"{period} left{held}; this call may cost up to ${estimate:.6f}"
            )
        when = "" if wait is None else f"; it resets in {wait:.0f}s"
        return BudgetExceeded(
            f"{dimension.value} {name!r} {why}{when}", budget=subject, wait_s=wait
        )
