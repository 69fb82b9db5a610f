"""The response cache as the gateway sees it: look up before routing, store after.

Only whole, successful answers are stored: a failed, cancelled or truncated
call, or a stream that ended early, never reaches `store`. A hit is
answered with the stored usage, a cost of 0 and the cost it saved; it takes
no limiter headroom, since it reaches no provider. Callers never read one
another's answers unless the operator shares them (`scope`), and a lookup
never leaves its namespace, model group or sampling fields.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchboard.cache.entry import STORABLE, CachedAnswer, decode, encode
from switchboard.cache.key import CacheKeys, cache_keys, scope_of
from switchboard.cache.matcher import SemanticMatcher
from switchboard.cache.store import CacheStore
from switchboard.config import CacheSettings
from switchboard.domain import (
    CacheFacts,
    CacheKind,
    Completion,
    CompletionRequest,
    Message,
    ProviderResponse,
    Role,
    RouteFacts,
    StreamDelta,
    StreamEvent,
    StreamFinal,
    ToolCall,
    ToolCallDelta,
)

log = logging.getLogger("switchboard.cache")

# Answers kept parsed, by their stored bytes (an entry's bytes never change in place).
DECODED_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class CacheStats:
    name: str
    backend: str
    entries: int
    bytes: int | None


@dataclass(frozen=True, slots=True)
class Hit:
    answer: CachedAnswer
    facts: CacheFacts


@dataclass(slots=True)
class Lookup:
    """What a lookup learnt, kept for the store that follows a miss."""

    keys: CacheKeys
    semantic: bool
    # The prompt's embedding, when the semantic lookup computed one.
    vector: Any | None = None
    hit: Hit | None = None


class CacheObserver(Protocol):
    """Where lookups are counted; the telemetry recorder is one."""

    def cache_lookup(self, group: str, kind: str, hit: bool) -> None:
        """`kind`: exact or semantic."""


class _Unobserved:
    def cache_lookup(self, group: str, kind: str, hit: bool) -> None:
        pass


class ResponseCache:
    def __init__(
        self,
        settings: CacheSettings,
        store: CacheStore,
        *,
        wall: Callable[[], float],
        semantic: SemanticMatcher | None = None,
        observer: CacheObserver | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._wall = wall
        self._semantic = semantic
        self._observer: CacheObserver = observer or _Unobserved()
        self._decoded: OrderedDict[bytes, CachedAnswer] = OrderedDict()

    @property
    def store_backend(self) -> str:
        return self._store.backend

    async def warm(self) -> bool:
        """Load the semantic model now rather than at the first lookup that needs it."""
        return self._semantic is not None and await self._semantic.warm()

    async def lookup(self, request: CompletionRequest, group: str) -> Lookup | None:
        """None when the request neither reads nor writes the cache."""
        control = request.cache
        if control.no_cache and control.no_store:
            return None
        keys = cache_keys(request, group, scope_of(request.caller, self._settings.scope))
        wanted = control.semantic
        semantic = (
            self._semantic is not None
            and bool(keys.prompt)
            and (wanted if wanted is not None else self._settings.semantic.on_for(group))
        )
        found = Lookup(keys=keys, semantic=semantic)
        if control.no_cache:
            return found
        answer = await self._get(keys.exact)
        self._observer.cache_lookup(group, CacheKind.EXACT.value, answer is not None)
        if answer is not None:
            found.hit = Hit(answer, self._facts(answer, CacheKind.EXACT, 1.0))
            return found
        if semantic and self._semantic is not None:
            threshold = control.min_similarity
            if threshold is None:
                threshold = self._settings.semantic.threshold
            semantic_lookup = self._semantic.lookup(keys.partition, keys.prompt, threshold)
            found.vector, match = await semantic_lookup
            if match is not None:
                key, similarity = match
                answer = await self._get(key)
                if answer is None:
                    # Expired or invalidated: the index only pointed at it.
                    await self._semantic.remove(key)
                else:
                    found.hit = Hit(answer, self._facts(answer, CacheKind.SEMANTIC, similarity))
            self._observer.cache_lookup(group, CacheKind.SEMANTIC.value, found.hit is not None)
        return found

    async def store(self, request: CompletionRequest, lookup: Lookup, answer: CachedAnswer) -> bool:
        """Store a whole answer; False when it may not be stored (and nothing was)."""
        control = request.cache
        if control.no_store or answer.finish_reason not in STORABLE:
            return False
        if not answer.content and not answer.tool_calls:
            return False
        keys = lookup.keys
        ttl = float(control.ttl_seconds) if control.ttl_seconds else self._settings.ttl_s
        await self._store.put(
            keys.exact, encode(answer), ttl_s=ttl, namespace=keys.namespace, tags=control.tags
        )
        if lookup.semantic and self._semantic is not None:
            await self._semantic.add(keys.partition, keys.exact, keys.prompt, lookup.vector)
        return True

    async def invalidate(self, namespace: str | None, tags: Sequence[str]) -> int:
        """Entries removed; the semantic index forgets them at their next match."""
        return await self._store.invalidate(namespace=namespace, tags=tags)

    async def stats(self) -> list[CacheStats]:
        size = await self._store.size()
        stats = [CacheStats("exact", self._store.backend, size.entries, size.bytes)]
        semantic = self._semantic
        if semantic is not None and (self._settings.semantic.configured or semantic.loaded):
            stats.append(CacheStats("semantic", "memory", semantic.size, None))
        return stats

    async def aclose(self) -> None:
        if self._semantic is not None:
            self._semantic.close()
        await self._store.aclose()

    async def _get(self, key: str) -> CachedAnswer | None:
        data = await self._store.get(key)
        if data is None:
            return None
        # The same bytes decode to the same answer: a popular entry is parsed once.
        answer = self._decoded.get(data)
        if answer is not None:
            self._decoded.move_to_end(data)
            return answer
        answer = decode(data)
        if answer is None:
            log.warning("a cache entry could not be read; treated as a miss")
            return None
        self._decoded[data] = answer
        if len(self._decoded) > DECODED_ENTRIES:
            self._decoded.popitem(last=False)
        return answer

    @staticmethod
    def _facts(answer: CachedAnswer, kind: CacheKind, similarity: float) -> CacheFacts:
        return CacheFacts(
            kind=kind,
            similarity=similarity,
            cost_saved_usd=answer.cost_usd,
            created=answer.created,
        )

    # ------------------------------------------------------------ conversions

    def answer_of(self, completion: Completion) -> CachedAnswer:
        response, route = completion.response, completion.route
        return CachedAnswer(
            id=response.id,
            model=response.model,
            deployment=route.deployment,
            model_group=route.model_group,
            pieces=(response.message.content,),
            tool_calls=response.message.tool_calls,
            finish_reason=response.finish_reason,
            usage=response.usage,
            cost_usd=route.cost_usd,
            created=self._wall(),
        )

    @staticmethod
    def completion_of(hit: Hit) -> Completion:
        answer = hit.answer
        return Completion(
            response=ProviderResponse(
                id=answer.id,
                model=answer.model,
                message=Message(
                    role=Role.ASSISTANT, content=answer.content, tool_calls=answer.tool_calls
                ),
                finish_reason=answer.finish_reason,
                usage=answer.usage,
            ),
            route=_hit_route(hit),
        )

    @staticmethod
    def replay(hit: Hit, time_to_first_chunk: Callable[[], float]) -> Iterator[StreamEvent]:
        """The stored answer as a stream: its pieces in order, its tool calls, then `final`.

        `time_to_first_chunk` is read after the first delta is handed on.
        """
        answer = hit.answer
        ttfc: float | None = None
        for piece in answer.pieces:
            if piece:
                yield StreamDelta(content=piece)
                if ttfc is None:
                    ttfc = time_to_first_chunk()
        if answer.tool_calls:
            yield StreamDelta(
                tool_calls=tuple(
                    ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                    for i, c in enumerate(answer.tool_calls)
                )
            )
            if ttfc is None:
                ttfc = time_to_first_chunk()
        yield StreamFinal(
            id=answer.id,
            model=answer.model,
            finish_reason=answer.finish_reason,
            usage=answer.usage,
            route=_hit_route(hit),
            time_to_first_chunk_s=ttfc if ttfc is not None else time_to_first_chunk(),
        )


def _hit_route(hit: Hit) -> RouteFacts:
    return RouteFacts(
        deployment=hit.answer.deployment,
        model_group=hit.answer.model_group,
        attempts=(),
        fallback_depth=0,
        cost_usd=0.0,
        cache_hit=True,
        cache=hit.facts,
    )


@dataclass(slots=True)
class StreamRecorder:
    """Gathers a stream's deltas into the answer to store when it ends whole."""

    pieces: list[str] = field(default_factory=list)
    # Tool calls by index: id, name, arguments so far.
    calls: dict[int, list[str]] = field(default_factory=dict)

    def add(self, delta: StreamDelta) -> None:
        if delta.content:
            self.pieces.append(delta.content)
        for d in delta.tool_calls:
            call = self.calls.setdefault(d.index, ["", "", ""])
            call[0] = call[0] or d.id
            call[1] = call[1] or d.name
            call[2] += d.arguments

    def answer(self, final: StreamFinal, created: float) -> CachedAnswer:
        return CachedAnswer(
            id=final.id,
            model=final.model,
            deployment=final.route.deployment,
            model_group=final.route.model_group,
            pieces=tuple(self.pieces),
            tool_calls=tuple(
                ToolCall(id=c[0], name=c[1], arguments=c[2]) for _, c in sorted(self.calls.items())
            ),
            finish_reason=final.finish_reason,
            usage=final.usage,
            cost_usd=final.route.cost_usd,
            created=created,
        )
