"""The client's own typed values: what callers build and what the gateway answers.

Frozen dataclasses rather than the generated messages, so callers get
attributes their type checker knows, plain Python values (seconds as floats,
enums as short lowercase strings) and nothing that changes under them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the assistant made; `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation.

    `role` is `system`, `user`, `assistant` or `tool` (`developer` is read as
    `system`, as OpenAI's newer models name it).
    """

    role: str
    content: str = ""
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is its arguments' JSON Schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Cache:
    """Per-call cache control; each None keeps the gateway's configured choice.

    A lookup finds only answers of its own `namespace`. `tags` name the
    documents (ids or content hashes) the prompt was built from, so that
    `invalidate_cache(tags=...)` can drop every answer built on one that
    changed. `semantic` asks for (or declines) the semantic cache too, and
    `min_similarity` (0 to 1) is the least cosine similarity its hit needs.
    """

    no_cache: bool = False
    no_store: bool = False
    ttl_seconds: int | None = None
    namespace: str = ""
    tags: Sequence[str] = ()
    semantic: bool | None = None
    min_similarity: float | None = None


@dataclass(frozen=True, slots=True)
class CacheHit:
    """How the cache answered a call.

    `kind` is `exact` or `semantic`; `similarity` is the prompts' cosine
    similarity (1.0 for an exact hit); `cost_saved_usd` is what the stored
    answer cost when it was made, and `created` when that was.
    """

    kind: str
    similarity: float
    cost_saved_usd: float
    created: datetime | None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one deployment; `outcome` is e.g. `success`, `rate_limited`, `timeout`."""

    deployment: str
    model_group: str
    outcome: str
    latency: float
    error: str


@dataclass(frozen=True, slots=True)
class Routing:
    """How the answering deployment was chosen; `queue_wait` in seconds."""

    strategy: str = ""
    explored: bool = False
    queue_wait: float = 0.0
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer and how the gateway obtained it.

    `finish_reason` is `stop`, `length`, `tool_calls` or `content_filter`;
    `fallback_depth` is 0 when the requested group answered. `cache` is set
    when the answer came from the cache (`cache_hit`); such an answer costs 0.
    """

    id: str
    model: str
    deployment: str
    model_group: str
    message: Message
    finish_reason: str
    usage: Usage
    cost_usd: float
    cache_hit: bool
    attempts: tuple[Attempt, ...]
    fallback_depth: int
    routing: Routing = field(default_factory=Routing)
    cache: CacheHit | None = None

    @property
    def text(self) -> str:
        return self.message.content

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.message.tool_calls


@dataclass(frozen=True, slots=True)
class StreamFinal:
    """The facts a stream ends with: usage, cost and routing.

    `time_to_first_chunk` is in seconds, from the start of the call; `cache`
    is set when the stream replayed a cached answer.
    """

    id: str
    model: str
    deployment: str
    model_group: str
    finish_reason: str
    usage: Usage
    cost_usd: float
    cache_hit: bool
    attempts: tuple[Attempt, ...]
    fallback_depth: int
    time_to_first_chunk: float
    routing: Routing = field(default_factory=Routing)
    cache: CacheHit | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """One provider deployment of a model group, as routing sees it now.

    `state` is `healthy`, `cooling_down` or `ramping`; the limits and what is
    left of them are None when unlimited.
    """

    id: str
    model: str
    provider: str
    state: str
    rpm_limit: int | None
    tpm_limit: int | None
    requests_remaining: int | None
    tokens_remaining: int | None
    in_flight: int
    traffic_share: float
    cooldown_until: datetime | None


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str
    deployments: tuple[Deployment, ...]
    fallbacks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """One of the gateway's caches: `name` is `exact` or `semantic`, `backend`
    `memory` or `redis`; `bytes` is None where the backend cannot say cheaply."""

    name: str
    backend: str
    entries: int
    bytes: int | None


@dataclass(frozen=True, slots=True)
class ModelList:
    """The gateway's model groups, its aliases (alias name -> group name) and
    its caches (none when caching is off)."""

    groups: tuple[ModelGroup, ...]
    aliases: Mapping[str, str]
    caches: tuple[CacheStats, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every name `complete` accepts: the groups, then the aliases."""
        return (*(g.name for g in self.groups), *self.aliases)


@dataclass(frozen=True, slots=True)
class CallStats:
    """What the calls of one group, key or team (or the attempts of one
    deployment) did over a period; latencies in seconds, None with no call."""

    requests: int
    errors: Mapping[str, int]
    latency_p50: float | None
    latency_p95: float | None
    input_tokens: int
    output_tokens: int
    spend_usd: float
    saved_usd: float
    cache_hits: int
    cache_hit_rate: float


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget and its current window; `resets_at` None for one over all time."""

    max_usd: float
    spend_usd: float
    remaining_usd: float
    duration: str
    resets_at: datetime | None


@dataclass(frozen=True, slots=True)
class Spender:
    """A caller key or a team: its calls, and its budget when it has one."""

    calls: CallStats
    budget: BudgetStatus | None


@dataclass(frozen=True, slots=True)
class Stats:
    """GetStats: figures per group, deployment, key, team and provider (spend)
    over `period` (`hour`, `day`, `month` or `total`). `shared`: the figures of
    every replica sharing the gateway's Redis. A key that is not an admin sees
    only its own key and team."""

    period: str
    period_start: datetime | None
    shared: bool
    groups: Mapping[str, CallStats]
    deployments: Mapping[str, CallStats]
    keys: Mapping[str, Spender]
    teams: Mapping[str, Spender]
    providers: Mapping[str, float]
