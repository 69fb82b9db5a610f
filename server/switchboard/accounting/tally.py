"""Counters per entity, and how one call record adds to them.

This is the hot path: `apply` runs once per call, inside `Ledger.record`,
and touches one `Counters` per entity the call concerns (its group, key,
team, and each attempt's deployment and provider), whatever the number of
periods: periods are derived later, when a tally is folded (`book.py`) or
written to Redis (`redis_sync.py`), because every period of one hour is
known from the hour alone.

Numbers are cleaned on the way in, since a provider's usage is as
untrusted as a caller: a cost or a count that is negative, not finite,
of the wrong type, or beyond any single call (MAX_USD, MAX_COUNT) counts
as 0, so one bad answer cannot poison a total or a budget for good. An
error kind longer than MAX_KIND characters is cut.
"""

from __future__ import annotations

import math

from switchboard.accounting.histogram import Histogram, bucket
from switchboard.accounting.histogram import merge as merge_histogram
from switchboard.accounting.records import SUCCESS, CallRecord, Dimension

MAX_USD = 1e6
MAX_COUNT = 1 << 40
MAX_KIND = 64

Entity = tuple[Dimension, str]

# An enum member read from its class costs a lookup through the metaclass: once, here.
GROUP, KEY, TEAM = Dimension.GROUP, Dimension.KEY, Dimension.TEAM
DEPLOYMENT, PROVIDER = Dimension.DEPLOYMENT, Dimension.PROVIDER


class Counters:
    """What a set of calls (or attempts) did; mutable, merged by adding."""

    __slots__ = (
        "cache_hits",
        "errors",
        "input_tokens",
        "latency",
        "output_tokens",
        "requests",
        "saved_usd",
        "spend_usd",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.latency: Histogram = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.spend_usd = 0.0
        self.saved_usd = 0.0
        self.cache_hits = 0

    def add(
        self,
        outcome: str,
        latency: int | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        saved_usd: float,
        cache_hit: bool,
    ) -> None:
        """One call or attempt; `latency` is a histogram bucket (None: no sample)."""
        self.requests += 1
        if outcome != SUCCESS:
            errors = self.errors
            errors[outcome] = errors.get(outcome, 0) + 1
        if latency is not None:
            histogram = self.latency
            histogram[latency] = histogram.get(latency, 0) + 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.spend_usd += cost_usd
        self.saved_usd += saved_usd
        if cache_hit:
            self.cache_hits += 1

    def merge(self, other: Counters) -> None:
        self.requests += other.requests
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        merge_histogram(self.latency, other.latency)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.spend_usd += other.spend_usd
        self.saved_usd += other.saved_usd
        self.cache_hits += other.cache_hits


Tally = dict[Entity, Counters]


def apply(tally: Tally, call: CallRecord) -> None:
    """Adds one finished call to `tally`."""
    outcome = kind(call.outcome)
    latency = None if call.latency_s is None else bucket(call.latency_s)
    input_tokens = count(call.input_tokens)
    output_tokens = count(call.output_tokens)
    cost = usd(call.cost_usd)
    saved = usd(call.saved_usd)
    hit = call.cache_hit is True
    get = tally.get
    entity: Entity = (GROUP, call.group)
    counters = get(entity) or _new(tally, entity)
    counters.add(outcome, latency, input_tokens, output_tokens, cost, saved, hit)
    if call.key is not None:
        entity = (KEY, call.key)
        counters = get(entity) or _new(tally, entity)
        counters.add(outcome, latency, input_tokens, output_tokens, cost, saved, hit)
    if call.team is not None:
        entity = (TEAM, call.team)
        counters = get(entity) or _new(tally, entity)
        counters.add(outcome, latency, input_tokens, output_tokens, cost, saved, hit)
    for attempt in call.attempts:
        input_tokens = count(attempt.input_tokens)
        output_tokens = count(attempt.output_tokens)
        cost = usd(attempt.cost_usd)
        entity = (DEPLOYMENT, attempt.deployment)
        counters = get(entity) or _new(tally, entity)
        counters.add(
            kind(attempt.outcome),
            bucket(attempt.latency_s),
            input_tokens,
            output_tokens,
            cost,
            0.0,
            False,
        )
        # Providers are counted for their budgets: no errors or latency.
        entity = (PROVIDER, attempt.provider)
        counters = get(entity) or _new(tally, entity)
        counters.requests += 1
        counters.input_tokens += input_tokens
        counters.output_tokens += output_tokens
        counters.spend_usd += cost


def _new(tally: Tally, entity: Entity) -> Counters:
    counters = tally[entity] = Counters()
    return counters


def usd(amount: float) -> float:
    if 0.0 <= amount <= MAX_USD:
        return amount
    return 0.0  # negative, NaN, infinite or absurd


def count(n: int) -> int:
    if n.__class__ is int and 0 <= n <= MAX_COUNT:
        return n
    return _odd_count(n)


def _odd_count(n: object) -> int:
    """Counts of another type (bool, a whole float) read as ints when they are one."""
    if isinstance(n, int | float) and math.isfinite(n) and n == int(n) and 0 <= n <= MAX_COUNT:
        return int(n)
    return 0


def kind(outcome: str) -> str:
    return outcome if len(outcome) <= MAX_KIND else outcome[:MAX_KIND]
