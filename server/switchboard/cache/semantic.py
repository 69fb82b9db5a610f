"""Nearest-neighbour lookup of prompt embeddings for the semantic cache.

The semantic cache answers a request with the answer to an earlier request
that meant the same, so it needs "the most similar earlier prompt" fast at a
hundred thousand entries, where an exact scan costs about 10 ms. usearch's
HNSW graph (f16 vectors) finds candidates in 1-2 ms there even on random
vectors, its worst case. Its similarities are approximate, so the few best
candidates are scored again against the float32 vectors kept here, and only
that exact cosine is compared with the threshold and reported. The graph can
still miss: on uniformly random 384-d vectors about 0.5% of near duplicates
at 20,000 entries, up to 2% of rewordings at 100,000. A miss costs an
upstream call, never a wrong answer.

Vectors live in partitions (one per model, namespace and whatever else must
never share answers); a search never leaves its partition. Each partition is
its own graph, so a partition that is rarely used costs nothing to the
others' search. A key names one entry of the exact cache and lives in one
partition at a time.

numpy and usearch are optional dependencies (the `switchboard[semantic]`
extra), imported when an index is built.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    F32 = npt.NDArray[np.float32]

_INSTALL_HINT = "the semantic cache needs optional packages: install switchboard[semantic]"
# Graph candidates scored exactly: the approximate (f16) order of the best
# few may be wrong, rarely the membership of the true best in them.
_RESCORE = 4


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(f"{_INSTALL_HINT} ({name} is missing)") from exc


@dataclass(slots=True)
class _Partition:
    graph: Any  # usearch.index.Index
    # usearch keys are integers: ours map to ids never reused, so a graph
    # entry removed and one added later can never be confused.
    keys: dict[int, str] = field(default_factory=dict)
    # Unit-length float32 copies, for the exact re-scoring.
    vectors: dict[int, F32] = field(default_factory=dict)


class SemanticIndex:
    """Partitioned cosine-similarity index of float32 vectors, bounded in entries.

    Beyond `max_entries` the oldest entries go first, across all partitions
    (first in, first out; replacing a key's vector counts as new). Not
    thread-safe: one thread at a time may call it, whichever thread that is.
    """

    def __init__(self, *, dimension: int, max_entries: int) -> None:
        if dimension <= 0 or max_entries <= 0:
            raise ValueError("dimension and max_entries must be positive")
        _import("numpy")
        self._usearch = _import("usearch.index")
        self._dimension = dimension
        self._max_entries = max_entries
        self._partitions: dict[str, _Partition] = {}
        # key -> (partition name, id), oldest first.
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    @property
    def dimension(self) -> int:
        return self._dimension

    def add(self, partition: str, key: str, vector: npt.NDArray[Any]) -> None:
        """Index `vector` under `key` in `partition`, replacing the key's previous vector."""
        if vector.ndim != 1:
            raise ValueError(f"expected one vector, got shape {vector.shape}")
        self.add_many(partition, [key], vector[None, :])

    def add_many(
        self, partition: str, keys: Sequence[str], vectors: npt.NDArray[Any], *, threads: int = 1
    ) -> None:
        """`add` for many keys at once: the graph inserts them in one call.

        `threads` is for bulk loads (0: all cores); the gateway adds from
        one worker thread, beside the event loop, and keeps the default.
        """
        import numpy as np

        rows = self._unit_rows(vectors)
        if rows.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for {rows.shape[0]} vectors")
        if not np.all(np.isfinite(rows)):
            raise ValueError("vectors must be finite and non-zero")
        # Later duplicates win; only the newest max_entries could survive anyway.
        latest = {key: i for i, key in enumerate(keys)}
        chosen = sorted(latest.items(), key=lambda item: item[1])[-self._max_entries :]
        if not chosen:
            return
        for key, _ in chosen:
            self.remove(key)
        part = self._partitions.get(partition) or _Partition(graph=self._new_graph())
        ids = np.arange(self._next_id, self._next_id + len(chosen), dtype=np.uint64)
        self._next_id += len(chosen)
        block = rows[[i for _, i in chosen]]
        part.graph.add(ids, block, threads=threads)
        self._partitions[partition] = part
        for (key, _), ident, row in zip(chosen, ids.tolist(), block, strict=True):
            part.keys[ident] = key
            # A copy: a view would keep the whole batch alive after its eviction.
            part.vectors[ident] = row.copy()
            self._entries[key] = (partition, ident)
        while len(self._entries) > self._max_entries:
            self.remove(next(iter(self._entries)))

    def search(
        self, partition: str, vector: npt.NDArray[Any], min_similarity: float
    ) -> tuple[str, float] | None:
        """The key nearest `vector` in `partition` and its cosine, if at least `min_similarity`."""
        import numpy as np

        if vector.ndim != 1:
            raise ValueError(f"expected one vector, got shape {vector.shape}")
        query = self._unit_rows(vector[None, :])[0]
        part = self._partitions.get(partition)
        if part is None or not np.all(np.isfinite(query)):
            return None
        matches = part.graph.search(query, _RESCORE, threads=1)
        candidates = [int(ident) for ident in matches.keys]
        if not candidates:
            return None
        scores = np.stack([part.vectors[ident] for ident in candidates]) @ query
        best = int(np.argmax(scores))
        similarity = float(scores[best])
        if similarity < min_similarity:
            return None
        return part.keys[candidates[best]], similarity

    def remove(self, key: str) -> None:
        """Forget `key` wherever it is; nothing happens if it is not indexed."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        name, ident = entry
        part = self._partitions[name]
        part.graph.remove(ident)
        del part.keys[ident]
        del part.vectors[ident]
        if not part.keys:
            # An empty partition keeps its graph's memory until dropped.
            del self._partitions[name]

    def _new_graph(self) -> Any:
        return self._usearch.Index(
            ndim=self._dimension,
            metric="cos",
            dtype="f16",
            connectivity=16,
            expansion_add=64,
            expansion_search=64,
        )

    def _unit_rows(self, vectors: npt.NDArray[Any]) -> F32:
        """Vectors as unit-length float32 rows (copies); a zero vector comes out NaN."""
        import numpy as np

        rows = np.array(vectors, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self._dimension:
            raise ValueError(f"expected vectors of dimension {self._dimension}, got {rows.shape}")
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            rows /= norms
        return rows
