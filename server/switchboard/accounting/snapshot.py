"""What GetStats shows: figures per entity over a period, and spend against budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.accounting.budget import Tracker
from switchboard.accounting.histogram import quantile
from switchboard.accounting.periods import Period
from switchboard.accounting.records import Dimension
from switchboard.accounting.tally import Counters, Entity, Tally


@dataclass(frozen=True, slots=True)
class CallStats:
    """What the calls (or, for a deployment, the attempts) of one entity did."""

    requests: int
    errors: Mapping[str, int]
    # None without a latency sample.
    latency_p50_s: float | None
    latency_p95_s: float | None
    input_tokens: int
    output_tokens: int
    spend_usd: float
    saved_usd: float
    cache_hits: int

    @property
    def cache_hit_rate(self) -> float:
        """cache_hits / requests; 0 with no request."""
        return self.cache_hits / self.requests if self.requests > 0 else 0.0

    @classmethod
    def of(cls, counters: Counters) -> CallStats:
        return cls(
            requests=counters.requests,
            errors=dict(counters.errors),
            latency_p50_s=quantile(counters.latency, 0.5),
            latency_p95_s=quantile(counters.latency, 0.95),
            input_tokens=counters.input_tokens,
            output_tokens=counters.output_tokens,
            spend_usd=counters.spend_usd,
            saved_usd=counters.saved_usd,
            cache_hits=counters.cache_hits,
        )


@dataclass(frozen=True, slots=True)
class WindowSpend:
    """Spend in an entity's current budget window."""

    duration: str  # as configured: `1d`, `1mo`
    window_id: str
    spend_usd: float
    starts_at: float  # wall seconds
    resets_at: float

    @classmethod
    def of(cls, tracker: Tracker) -> WindowSpend:
        return cls(
            duration=tracker.window.duration,
            window_id=tracker.window_id,
            spend_usd=tracker.spend,
            starts_at=tracker.start,
            resets_at=tracker.end,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    period: Period
    # `2026-12-03T10` (hour), `2026-12-03` (day), `2026-12` (month), `all`.
    period_id: str
    # Wall seconds at which the period began; None for all time.
    start: float | None
    # True: every process sharing this Redis; False: this process's own figures
    # (no Redis, or Redis did not answer).
    shared: bool
    # Every dimension is present; names in order.
    stats: Mapping[Dimension, Mapping[str, CallStats]]
    # The entities with a budget window, whatever the period.
    budgets: Mapping[Dimension, Mapping[str, WindowSpend]]

    def get(self, dimension: Dimension, name: str) -> CallStats | None:
        return self.stats[dimension].get(name)


def build(
    period: Period,
    period_id: str,
    start: float | None,
    *,
    shared: bool,
    tally: Tally,
    trackers: Mapping[Entity, Tracker],
) -> Snapshot:
    stats: dict[Dimension, dict[str, CallStats]] = {dimension: {} for dimension in Dimension}
    for (dimension, name), counters in sorted(tally.items(), key=lambda item: item[0][1]):
        stats[dimension][name] = CallStats.of(counters)
    budgets: dict[Dimension, dict[str, WindowSpend]] = {dimension: {} for dimension in Dimension}
    for (dimension, name), tracker in sorted(trackers.items(), key=lambda item: item[0][1]):
        budgets[dimension][name] = WindowSpend.of(tracker)
    return Snapshot(period, period_id, start, shared, stats, budgets)
