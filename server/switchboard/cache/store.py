"""Where exact-cache entries live: the contract both backends keep.

A store knows nothing of requests or answers: it keeps opaque bytes under
a key, with a time to live, a namespace and the tags (document ids) the
answer was built from, so that an invalidation can find every entry built
on a document without reading any of them. Writes are all or nothing: an
entry is visible whole, with its tags, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoreSize:
    entries: int
    # Bytes of stored values (not keys or indexes); None where not known cheaply.
    bytes: int | None


class CacheStore(Protocol):
    # "memory" or "redis": for ListModels and metrics.
    @property
    def backend(self) -> str: ...

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""

    async def put(
        self, key: str, value: bytes, *, ttl_s: float, namespace: str, tags: Sequence[str]
    ) -> None:
        """Store `value` for `ttl_s` seconds, replacing any entry under `key`.

        A value the store cannot keep (`ttl_s` not positive, larger than the
        store's bound) still removes the entry it would have replaced: the
        caller meant the old answer to go.
        """

    async def invalidate(self, *, namespace: str | None, tags: Sequence[str]) -> int:
        """Remove entries and say how many were removed.

        With tags: every entry carrying any of them, limited to `namespace`
        when one is given. Without tags: every entry of `namespace`. None is
        no namespace given, "" the default namespace; with neither tags nor
        a namespace, ValueError (that would be everything or nothing).
        Entries already expired are not counted.
        """

    async def size(self) -> StoreSize: ...

    async def aclose(self) -> None: ...
