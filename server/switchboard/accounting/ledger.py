"""The ledger the gateway talks to: record calls, check budgets, report.

    ledger = Ledger(windows={(Dimension.KEY, "alice"): BudgetWindow("1d")}, redis=client)
    await ledger.start()                  # with Redis: loads the shared window spend
    ledger.record(call)                   # once per finished call: sync, never raises
    spend, resets_at = ledger.window_spend(Dimension.KEY, "alice")  # sync, no I/O
    snapshot = await ledger.snapshot(Period.DAY)                     # GetStats
    await ledger.aclose()                 # stops the flush loop after a last flush

`record` and `window_spend` cost microseconds and never touch Redis:
recording adds to this hour's tally (`tally.py`) and to the budget mirror
(`budget.py`); everything else happens in `flush`, which the background
task runs every `flush_interval_s` and `snapshot` runs first. A flush
folds what was recorded into this process's own figures (`book.py`) and,
with Redis, sends it and reads back the shared window spend in one
pipeline (`redis_sync.py`, which also says what happens when Redis fails).
Without Redis the figures are this process's only.

The Redis client is injected; it is closed here only when `owns_redis` says so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import redis.asyncio

from switchboard.accounting.book import Book
from switchboard.accounting.budget import BudgetMirror
from switchboard.accounting.fields import parse_stats
from switchboard.accounting.periods import HOUR_S, Period, hour_index, period_id, period_start
from switchboard.accounting.records import CallRecord, Dimension
from switchboard.accounting.redis_sync import UNAVAILABLE, RedisSync
from switchboard.accounting.snapshot import Snapshot, WindowSpend, build
from switchboard.accounting.tally import (
    DEPLOYMENT,
    GROUP,
    KEY,
    PROVIDER,
    TEAM,
    Entity,
    Tally,
    apply,
    usd,
)
from switchboard.accounting.windows import BudgetWindow
from switchboard.tasks import stop_task

log = logging.getLogger("switchboard.accounting")


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """How delivery to Redis is going (all zero and not shared without Redis)."""

    shared: bool
    failing: bool
    pending_fields: int
    dropped_fields: int  # dropped as the pending bound was passed
    refused_fields: int  # refused by Redis for good (e.g. a key of another type)
    failed_records: int  # records that raised (a bug; they were not counted)


class Ledger:
    def __init__(
        self,
        *,
        windows: Mapping[Entity, BudgetWindow] | None = None,
        redis: redis.asyncio.Redis | None = None,
        prefix: str = "switchboard:accounting:",
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        flush_interval_s: float = 0.2,
        max_pending_fields: int = 100_000,
        max_names: int = 10_000,
        owns_redis: bool = False,
    ) -> None:
        """`windows`: the entities with a budget, and their windows.

        Build the Redis client with short socket timeouts: a flush, and so a
        snapshot, waits on them. It may be shared with the other Redis users,
        and may retry (a batch sent twice is applied once). `prefix` must be
        the same in every process that shares figures, and differ otherwise.
        """
        if not (math.isfinite(flush_interval_s) and flush_interval_s > 0):
            raise ValueError(f"flush_interval_s must be positive, not {flush_interval_s!r}")
        if max_pending_fields < 1 or max_names < 1:
            raise ValueError("max_pending_fields and max_names must be at least 1")
        self._windows = dict(windows or {})
        self._owned = redis if owns_redis else None
        self._wall = wall
        self._sleep = sleep
        self._interval = flush_interval_s
        self._sync = (
            None
            if redis is None
            else RedisSync(
                redis,
                prefix=prefix,
                max_fields=max_pending_fields,
                budget_entities=self._windows,
            )
        )
        self._mirror = BudgetMirror(self._windows, shared=self._sync is not None)
        self._budget_dimensions = self._mirror.dimensions
        self._attempt_budgets = bool(self._budget_dimensions & {DEPLOYMENT, PROVIDER})
        self._book = Book(max_names)
        # Recorded and not yet folded, by hour; `_tally` is the current hour's.
        self._fresh: dict[int, Tally] = {}
        self._hour: int | None = None
        self._tally: Tally = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failed_records = 0

    def record(self, call: CallRecord) -> None:
        """Counts one finished call. Never raises, never waits."""
        try:
            wall = self._wall()
            hour = int(wall // HOUR_S)
            if hour != self._hour:
                self._new_hour(hour)
            apply(self._tally, call)
            if self._budget_dimensions:
                self._spend(call, wall)
        except Exception:
            self._failed_records += 1
            if self._failed_records == 1:
                log.exception("accounting: a call record could not be counted (logged once)")

    def window_spend(self, dimension: Dimension, name: str) -> tuple[float, float]:
        """Spend in the entity's current budget window, and when it resets (wall seconds).

        KeyError when the entity has no budget window.
        """
        return self._mirror.spend(dimension, name, self._wall())

    def budget_window(self, dimension: Dimension, name: str) -> WindowSpend:
        """`window_spend` with the window's facts; KeyError when it has none."""
        self.window_spend(dimension, name)
        return WindowSpend.of(self._mirror.trackers[dimension, name])

    async def start(self) -> None:
        """With Redis: loads the shared window spend, then flushes in the background."""
        if self._sync is None or self._task is not None:
            return
        await self.flush()
        self._task = asyncio.create_task(self._run(), name="switchboard-accounting-flush")

    async def aclose(self) -> None:
        """Stops the background flushes, then flushes once more."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)
        await self.flush()
        if self._owned is not None:
            await self._owned.aclose()

    async def flush(self) -> bool:
        """Folds what was recorded, sends it to Redis and reads back the window spend.

        False when Redis did not take everything (what it did not take stays
        pending). A caller cancelled midway (a GetStats given up) does not cut
        the flush short: it finishes, and settles the budget mirror, for all.
        """
        return await asyncio.shield(self._flush())

    async def snapshot(self, period: Period) -> Snapshot:
        """The period's figures: of every process sharing Redis, else this process's."""
        sent = await self.flush()
        wall = self._wall()
        hour = hour_index(wall)
        pid, start = period_id(period, hour), period_start(period, hour)
        self._mirror.roll(wall)
        tally: Tally | None = None
        if self._sync is not None and sent:
            try:
                tally = parse_stats(await self._sync.read_stats(period, pid))
            except UNAVAILABLE as exc:
                log.warning(
                    "accounting: Redis did not answer a snapshot (%s: %s)", type(exc).__name__, exc
                )
        shared = tally is not None
        if tally is None:
            tally = self._book.figures(period, hour)
        return build(period, pid, start, shared=shared, tally=tally, trackers=self._mirror.trackers)

    @property
    def status(self) -> SyncStatus:
        sync = self._sync
        if sync is None:
            return SyncStatus(False, False, 0, 0, 0, self._failed_records)
        return SyncStatus(
            shared=True,
            failing=sync.failing,
            pending_fields=sync.pending_fields,
            dropped_fields=sync.dropped_fields,
            refused_fields=sync.refused_fields,
            failed_records=self._failed_records,
        )

    def _new_hour(self, hour: int) -> None:
        if self._sync is None:
            self._drain()  # no flush loop folds finished hours: fold them now
        self._hour = hour
        self._tally = self._fresh.setdefault(hour, {})

    def _spend(self, call: CallRecord, wall: float) -> None:
        mirror = self._mirror
        cost = usd(call.cost_usd)
        if cost:
            mirror.add((GROUP, call.group), cost, wall)
            if call.key is not None:
                mirror.add((KEY, call.key), cost, wall)
            if call.team is not None:
                mirror.add((TEAM, call.team), cost, wall)
        if self._attempt_budgets:
            for attempt in call.attempts:
                cost = usd(attempt.cost_usd)
                mirror.add((DEPLOYMENT, attempt.deployment), cost, wall)
                mirror.add((PROVIDER, attempt.provider), cost, wall)

    def _drain(self) -> None:
        """Folds what was recorded into the book and, with Redis, hands it to the sync."""
        fresh, self._fresh = self._fresh, {}
        if self._hour is not None:
            self._tally = self._fresh[self._hour] = {}
        for hour, raw in fresh.items():
            if raw:
                tally = self._book.canonical(raw)
                self._book.fold(hour, tally)
                if self._sync is not None:
                    self._sync.add_stats(hour, tally)
        if self._sync is not None:
            self._sync.add_spend(self._mirror.drain(), self._ttl_of)

    def _ttl_of(self, entity: Entity) -> int:
        return self._windows[entity].ttl_s

    async def _flush(self) -> bool:
        async with self._lock:
            self._drain()
            if self._sync is None:
                return True
            read = await self._sync.push(self._mirror.window_ids(self._wall()))
            self._mirror.settle(self._wall(), self._sync.unsent_spend, read)
            return read is not None and not self._sync.failing

    async def _run(self) -> None:
        broken = False  # a flush that raises is a bug: say so once, not five times a second
        while True:
            await self._sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                if not broken:
                    log.exception("accounting: flush failed (logged once until one succeeds)")
                broken = True
            else:
                broken = False
