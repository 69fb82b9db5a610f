"""The exact cache in this process: a bounded LRU with time to live.

For a single gateway, or replicas that can afford each its own cache. The
bounds are on entry count and on value bytes, so that neither many small
answers nor a few huge ones can grow the process without limit. Expired
entries are dropped when read, and a put sweeps a bounded number of them
so that a burst of expiries never stalls the event loop on one call.

Tag and namespace indexes let `invalidate` reach the entries built on a
document without scanning the whole cache; every removal path (eviction,
expiry, replacement, invalidation) goes through one method that keeps
them consistent.

Everything is synchronous under `async def`: the event loop is the only
thread touching the store, so no method awaits or needs a lock, and an
entry with its tags is visible whole or not at all.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from switchboard.cache.store import CacheStore, StoreSize

# Expired entries a put may sweep: enough to outpace the one entry it adds,
# little enough that a put stays cheap when many entries expire at once.
_SWEEP_PER_PUT = 64
# The expiry heap keeps items of entries removed early (evicted, replaced,
# invalidated) until their time; it is rebuilt when they outnumber the live.
_HEAP_SLACK = 64


@dataclass(slots=True)
class _Entry:
    value: bytes
    expires_at: float
    namespace: str
    tags: tuple[str, ...]
    # Tells this entry's expiry-heap item from those of earlier entries under the same key.
    seq: int


class MemoryStore(CacheStore):
    def __init__(self, *, max_entries: int, max_bytes: int, clock: Callable[[], float]) -> None:
        """`clock` is monotonic seconds; tests pass a fake one to expire entries at will."""
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("max_entries and max_bytes must not be negative")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        # Least recently used first.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._by_tag: dict[str, set[str]] = {}
        self._by_namespace: dict[str, set[str]] = {}
        # (expires_at, seq, key); seq is unique, so keys are never compared.
        self._expiries: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    @property
    def backend(self) -> str:
        return "memory"

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def put(
        self, key: str, value: bytes, *, ttl_s: float, namespace: str, tags: Sequence[str]
    ) -> None:
        """Store `value`, or only drop the old entry when the new one cannot be kept.

        A put replaces: when the new value is larger than `max_bytes`, or its
        time to live is not positive, the old entry must not outlive it.
        """
        now = self._clock()
        self._sweep(now, _SWEEP_PER_PUT)
        self._remove(key)
        size = len(value)
        # `not ttl_s > 0` also refuses NaN, which would never expire.
        if not ttl_s > 0 or size > self._max_bytes or self._max_entries == 0:
            return
        unique_tags = tuple(dict.fromkeys(tags))
        entry = _Entry(bytes(value), now + ttl_s, namespace, unique_tags, next(self._seq))
        self._entries[key] = entry
        self._bytes += size
        for tag in entry.tags:
            self._by_tag.setdefault(tag, set()).add(key)
        self._by_namespace.setdefault(namespace, set()).add(key)
        heapq.heappush(self._expiries, (entry.expires_at, entry.seq, key))
        # The new entry is last and fits alone, so this never evicts it.
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._remove(next(iter(self._entries)))
        if len(self._expiries) > 2 * len(self._entries) + _HEAP_SLACK:
            self._expiries = [(e.expires_at, e.seq, k) for k, e in self._entries.items()]
            heapq.heapify(self._expiries)

    async def invalidate(self, *, namespace: str | None, tags: Sequence[str]) -> int:
        """Entries already expired are removed but not counted: they were no longer cached."""
        if not tags and namespace is None:
            raise ValueError("invalidate needs tags, a namespace or both")
        keys: set[str] = set()
        if tags:
            for tag in tags:
                keys.update(self._by_tag.get(tag, ()))
            if namespace is not None:
                keys = {key for key in keys if self._entries[key].namespace == namespace}
        else:
            assert namespace is not None
            keys.update(self._by_namespace.get(namespace, ()))
        now = self._clock()
        removed = 0
        for key in keys:
            if self._entries[key].expires_at > now:
                removed += 1
            self._remove(key)
        return removed

    async def size(self) -> StoreSize:
        """Exact: sweeps every expired entry first.

        That sweep is at most `max_entries` heap pops, and size() is only
        asked for by ListModels and metrics, not on the request path.
        """
        self._sweep(self._clock(), None)
        return StoreSize(entries=len(self._entries), bytes=self._bytes)

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._by_tag.clear()
        self._by_namespace.clear()
        self._expiries.clear()

    def _remove(self, key: str) -> None:
        """The one way out of the store, so the indexes and byte count never drift."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= len(entry.value)
        for tag in entry.tags:
            _discard(self._by_tag, tag, key)
        _discard(self._by_namespace, entry.namespace, key)

    def _sweep(self, now: float, limit: int | None) -> None:
        expiries = self._expiries
        swept = 0
        while expiries and expiries[0][0] <= now and (limit is None or swept < limit):
            _, seq, key = heapq.heappop(expiries)
            entry = self._entries.get(key)
            # Otherwise the item outlived its entry (removed early or replaced).
            if entry is not None and entry.seq == seq:
                self._remove(key)
            swept += 1


def _discard(index: dict[str, set[str]], name: str, key: str) -> None:
    keys = index.get(name)
    if keys is None:
        return
    keys.discard(key)
    if not keys:
        del index[name]
