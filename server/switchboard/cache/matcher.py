"""The semantic half's moving parts, kept off the event loop.

Embedding a prompt costs milliseconds of CPU and the index is not
thread-safe, so both run on one worker thread of their own: calls are
serialised there, and the event loop only awaits them. The model loads on
first use (or at start, through `warm`), once, so a config that never asks
for semantic lookups never pays for it, and one that lacks the optional
packages fails softly: the lookup is a miss and the reason is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("switchboard.cache")


class Embedder(Protocol):
    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Any: ...


class Index(Protocol):
    def add(self, partition: str, key: str, vector: Any) -> None: ...

    def search(
        self, partition: str, vector: Any, min_similarity: float
    ) -> tuple[str, float] | None: ...

    def remove(self, key: str) -> None: ...

    def __len__(self) -> int: ...


def local_model(model_dir: Path | None) -> Callable[[], Embedder]:
    def load() -> Embedder:
        from switchboard.cache.embedding import LocalEmbedder

        return LocalEmbedder.load(model_dir)

    return load


def usearch_index(max_entries: int) -> Callable[[int], Index]:
    def make(dimension: int) -> Index:
        from switchboard.cache.semantic import SemanticIndex

        return SemanticIndex(dimension=dimension, max_entries=max_entries)

    return make


class SemanticMatcher:
    def __init__(
        self,
        *,
        load_embedder: Callable[[], Embedder],
        make_index: Callable[[int], Index],
    ) -> None:
        self._load_embedder = load_embedder
        self._make_index = make_index
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semantic-cache")
        # Touched on the worker thread only.
        self._embedder: Embedder | None = None
        self._index: Index | None = None
        self._broken: str | None = None
        self._lock = threading.Lock()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def loaded(self) -> bool:
        """Whether the model was loaded (at start, or by a first request that opted in)."""
        return self._index is not None

    @property
    def unavailable(self) -> str | None:
        """Why semantic lookups cannot work (the model failed to load), or None."""
        return self._broken

    async def warm(self) -> bool:
        """Load the model now; False (and logged) when it cannot be."""
        return await self._run(self._ready) is not None

    async def lookup(
        self, partition: str, text: str, min_similarity: float
    ) -> tuple[Any, tuple[str, float] | None]:
        """The prompt's vector (None when there is no model) and the best match, if close enough."""
        result = await self._run(self._lookup, partition, text, min_similarity)
        return result if result is not None else (None, None)

    async def add(self, partition: str, key: str, text: str, vector: Any | None) -> None:
        await self._run(self._add, partition, key, text, vector)

    async def remove(self, key: str) -> None:
        await self._run(self._remove, key)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------ worker thread

    def _ready(self) -> tuple[Embedder, Index] | None:
        with self._lock:
            if self._broken is not None:
                return None
            if self._embedder is None or self._index is None:
                try:
                    embedder = self._load_embedder()
                    self._index = self._make_index(embedder.dimension)
                    self._embedder = embedder
                except Exception as exc:  # an optional part: its absence is a miss, not a failure
                    self._broken = f"{type(exc).__name__}: {exc}"
                    log.warning("semantic cache unavailable: %s", self._broken)
                    return None
            return self._embedder, self._index

    def _lookup(
        self, partition: str, text: str, min_similarity: float
    ) -> tuple[Any, tuple[str, float] | None] | None:
        ready = self._ready()
        if ready is None:
            return None
        embedder, index = ready
        vector = embedder.embed([text])[0]
        return vector, index.search(partition, vector, min_similarity)

    def _add(self, partition: str, key: str, text: str, vector: Any | None) -> None:
        ready = self._ready()
        if ready is None:
            return
        embedder, index = ready
        if vector is None:
            vector = embedder.embed([text])[0]
        index.add(partition, key, vector)
        self._size = len(index)

    def _remove(self, key: str) -> None:
        if self._index is not None:
            self._index.remove(key)
            self._size = len(self._index)
