"""Pending increments, and their delivery to Redis in one pipeline per flush.

Increments wait in `pending`, one sum per (hashes, field), in the order
they first appeared. A flush seals them into batches (`batch.py`) and
sends, in one non-transactional pipeline: the deletion of the markers of
batches confirmed last time, one EVAL per unconfirmed batch (oldest
first), and the reads asked for (HGETALL of each budget window's hash).
An increment is forgotten only once Redis answered for its batch. So:

- Redis down (any RedisError or OSError): nothing is forgotten; the next
  flush sends the same batches. One WARNING when failures start, one INFO
  when Redis answers again, whatever the number of flushes in between.
- A reply lost after the batch was sent (the ambiguous case): the batch
  is sent again and its marker makes Redis skip it if it was applied, so
  nothing is counted twice (see `batch.py`).
- An increment Redis refused for good (a key of another type, an
  overflow) would be refused again: it is dropped and counted
  (`refused_fields`), logged once. A refusal that may pass (OOM, READONLY
  during a failover, LOADING, TRYAGAIN, MASTERDOWN, BUSY) keeps it pending.
- More than `max_fields` pending (a long outage): the oldest are dropped
  and counted (`dropped_fields`), so memory stays bounded.

`add_*` and `push` must not interleave: the ledger calls them under one lock.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from switchboard.accounting.batch import SCRIPT, Amount, Batch, Entry, may_pass
from switchboard.accounting.fields import budget_key, entity_field, metrics, parse_usd, stats_key
from switchboard.accounting.periods import Period, period_id, ttl_s
from switchboard.accounting.tally import Entity, Tally

log = logging.getLogger("switchboard.accounting")

# Socket failures may surface as OSError (TimeoutError included) rather than RedisError.
UNAVAILABLE = (RedisError, OSError)
# Entries per batch: one script holds Redis for about a millisecond per thousand.
BATCH_ENTRIES = 2000
# Markers whose deletion keeps failing are left to expire beyond this many.
_MAX_CONFIRMED = 10_000

Spend = dict[tuple[str, Entity], float]  # (window id, entity) -> USD
Read = dict[str, dict[Entity, float]]  # window id -> entity -> USD


class RedisSync:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str,
        max_fields: int,
        budget_entities: Iterable[Entity] = (),
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._max_fields = max_fields
        # One marker hash per process (per ledger): a random name, not a pid, which repeats.
        self._marker = f"{prefix}applied:{secrets.token_hex(8)}"
        self._pending: dict[Entry, Amount] = {}
        self._batches: list[Batch] = []
        self._confirmed: list[str] = []
        self._seq = 0
        self._ttl: dict[str, int | None] = {}
        # Budget fields are named once: flushes read them back many times a second.
        self._budget_fields = {entity: entity_field(entity) for entity in budget_entities}
        self._budget_entities = {field: entity for entity, field in self._budget_fields.items()}
        self.failing = False
        self.failed_flushes = 0
        self.dropped_fields = 0
        self.refused_fields = 0
        self._dropping = False

    @property
    def pending_fields(self) -> int:
        return len(self._pending) + sum(len(batch.entries) for batch in self._batches)

    def add_stats(self, hour: int, tally: Tally) -> None:
        """A canonical tally of hour `hour`, into each period's hash."""
        targets = []
        for period in Period:
            key = stats_key(self._prefix, period, period_id(period, hour))
            self._ttl[key] = ttl_s(period)
            targets.append(key)
        hashes = tuple(targets)
        pending = self._pending
        for entity, counters in tally.items():
            prefix = entity_field(entity) + ":"
            for metric, amount in metrics(counters):
                entry = (hashes, prefix + metric)
                pending[entry] = pending.get(entry, 0) + amount
        self._bound()

    def add_spend(self, spend: Spend, ttl_of: Callable[[Entity], int]) -> None:
        """Spend per budget window, into each window's hash."""
        pending = self._pending
        for (window_id, entity), amount in spend.items():
            key = budget_key(self._prefix, window_id)
            self._ttl[key] = ttl_of(entity)
            entry = ((key,), self._budget_field(entity))
            pending[entry] = pending.get(entry, 0.0) + amount
        self._bound()

    def unsent_spend(self, window_id: str, entity: Entity) -> float:
        """This process's spend in a window that Redis has not confirmed."""
        if not self._pending and not self._batches:
            return 0.0
        entry = ((budget_key(self._prefix, window_id),), self._budget_field(entity))
        total = float(self._pending.get(entry, 0.0))
        for batch in self._batches:
            total += batch.entries.get(entry, 0.0)
        return total

    async def push(self, window_ids: Sequence[str]) -> Read | None:
        """Sends everything pending and reads back the spend in the windows named.

        Returns the spend read back (a window whose read failed is absent),
        or None when Redis did not answer.
        """
        self._seal()
        if not self._batches and not self._confirmed and not window_ids:
            return {}
        pipe = self._client.pipeline(transaction=False)
        confirmed = self._confirmed[:]
        if confirmed:
            pipe.hdel(self._marker, *confirmed)
        batches = self._batches[:]
        for batch in batches:
            numkeys, arguments = batch.arguments(self._marker, self._ttl)
            pipe.eval(SCRIPT, numkeys, *arguments)
        for window_id in window_ids:
            pipe.hgetall(budget_key(self._prefix, window_id))
        try:
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        except UNAVAILABLE as exc:
            self._failed(exc)
            return None
        if confirmed and not isinstance(replies[0], Exception):
            del self._confirmed[: len(confirmed)]
        replies = replies[1:] if confirmed else replies
        passing = self._settle(batches, replies[: len(batches)])
        read = self._read(window_ids, replies[len(batches) :])
        if passing is not None:
            self._failed(passing)
        else:
            self._recovered()
        if not self._pending and not self._batches:
            self._ttl.clear()
        return read

    async def read_stats(self, period: Period, period_id: str) -> dict[bytes | str, bytes | str]:
        """A period's hash; raises what the client raises."""
        fields: dict[bytes | str, bytes | str] = await self._client.hgetall(
            stats_key(self._prefix, period, period_id)
        )
        return fields

    def _seal(self) -> None:
        pending, self._pending = self._pending, {}
        items = iter(pending.items())
        while chunk := dict(islice(items, BATCH_ENTRIES)):
            self._seq += 1
            self._batches.append(Batch(self._seq, chunk))

    def _settle(self, batches: list[Batch], replies: list[Any]) -> Exception | None:
        """Forgets what Redis took; returns a refusal that may pass, if any."""
        passing: Exception | None = None
        done: set[int] = set()
        for batch, reply in zip(batches, replies, strict=True):
            if isinstance(reply, Exception):
                if may_pass(reply):
                    passing = reply
                    continue
                self._refused(len(batch.entries), f"a batch: {reply}")
            else:
                self._confirmed.append(str(batch.seq))
                for key, name, amount, error in batch.refusals(reply):
                    if may_pass(error):
                        entry = ((key,), name)
                        self._pending[entry] = self._pending.get(entry, 0) + amount
                        passing = RedisError(error)
                    else:
                        self._refused(1, f"{key} {name}: {error}")
            done.add(batch.seq)
        self._batches = [batch for batch in self._batches if batch.seq not in done]
        del self._confirmed[:-_MAX_CONFIRMED]
        return passing

    def _read(self, window_ids: Sequence[str], replies: list[Any]) -> Read:
        read: Read = {}
        for window_id, fields in zip(window_ids, replies, strict=True):
            if isinstance(fields, dict):
                values = read[window_id] = {}
                for name, value in fields.items():
                    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
                    entity = self._budget_entities.get(text)
                    if entity is not None:
                        values[entity] = parse_usd(value)
        return read

    def _budget_field(self, entity: Entity) -> str:
        field = self._budget_fields.get(entity)
        return entity_field(entity) if field is None else field

    def _bound(self) -> None:
        excess = self.pending_fields - self._max_fields
        if excess <= 0:
            return
        dropped = 0
        while self._batches and dropped < excess:
            dropped += len(self._batches.pop(0).entries)
        if dropped < excess:
            for entry in list(islice(self._pending, excess - dropped)):
                del self._pending[entry]
            dropped = excess
        self.dropped_fields += dropped
        if not self._dropping:
            self._dropping = True
            log.warning(
                "accounting: over %d increments wait for Redis; dropping the oldest "
                "(counted in dropped_fields)",
                self._max_fields,
            )

    def _refused(self, count: int, what: str) -> None:
        self.refused_fields += count
        if self.refused_fields == count:
            log.warning(
                "accounting: Redis refused %s; refusals are dropped and counted, not logged again",
                what,
            )

    def _failed(self, exc: BaseException) -> None:
        self.failed_flushes += 1
        if not self.failing:
            self.failing = True
            log.warning(
                "accounting: Redis unavailable (%s: %s); %d increments kept until it answers",
                type(exc).__name__,
                exc,
                self.pending_fields,
            )

    def _recovered(self) -> None:
        if self.failing:
            log.info(
                "accounting: Redis answers again after %d failed flushes; pending figures sent",
                self.failed_flushes,
            )
        self.failing = False
        self._dropping = False
        self.failed_flushes = 0
