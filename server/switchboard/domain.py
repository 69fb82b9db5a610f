"""The gateway's own vocabulary: requests, answers, chunks and attempts.

These types know neither protobuf nor litellm. `api/` converts the wire
messages into them at one edge and `providers/` converts them into provider
calls at the other, so everything in between (routing, limits, caching,
accounting) speaks one language and can be tested without either library.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.faults import InjectedFault


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"

    @classmethod
    def from_provider(cls, value: str | None) -> FinishReason:
        """Providers spell finish reasons several ways; unknown ones read as a stop."""
        if value is None:
            return cls.STOP
        normalised = value.lower()
        if normalised in ("length", "max_tokens"):
            return cls.LENGTH
        if normalised in ("tool_calls", "function_call", "tool_use"):
            return cls.TOOL_CALLS
        if normalised in ("content_filter", "safety"):
            return cls.CONTENT_FILTER
        return cls.STOP


class Outcome(enum.Enum):
    """How one upstream attempt ended; one value per kind of the error taxonomy."""

    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    BAD_REQUEST = "bad_request"
    CONTEXT_WINDOW_EXCEEDED = "context_window_exceeded"
    CONTENT_POLICY = "content_policy"
    AUTHENTICATION = "authentication"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    INVALID_OUTPUT = "invalid_output"


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    # Multimodal parts after `content` (which, when set, is the first text).
    parts: tuple[Part, ...] = ()

    @property
    def has_images(self) -> bool:
        return any(isinstance(p, ImagePart) for p in self.parts)


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by `url`, or inline `data` of `media_type`; `detail` low, high or auto."""

    url: str = ""
    data: bytes = b""
    media_type: str = ""
    detail: str = ""

    def data_url(self) -> str:
        """The image as a URL: its own, or a data: URL of the inline bytes."""
        if self.url:
            return self.url
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True, slots=True)
class AudioPart:
    data: bytes
    format: str


@dataclass(frozen=True, slots=True)
class FilePart:
    data: bytes
    media_type: str
    filename: str = ""


Part = TextPart | ImagePart | AudioPart | FilePart


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    # A JSON Schema object, passed through to the provider unchanged.
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling fields the caller set; None means the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class CacheControl:
    no_cache: bool = False
    no_store: bool = False
    ttl_seconds: int | None = None
    namespace: str = ""
    # The documents the prompt was built from, for invalidation.
    tags: tuple[str, ...] = ()
    # None: the model group's configured choice.
    semantic: bool | None = None
    min_similarity: float | None = None


class CacheKind(enum.Enum):
    EXACT = "exact"
    SEMANTIC = "semantic"


@dataclass(frozen=True, slots=True)
class CacheFacts:
    """How a cache answered a call."""

    kind: CacheKind
    similarity: float
    # What the stored answer cost when it was made.
    cost_saved_usd: float
    # Wall-clock seconds since the epoch when the stored answer was made.
    created: float


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a call, as far as the gateway knows: a configured key's name, never its value."""

    name: str
    # The key's limiter key when it has rpm/tpm limits; None: only deployments limit it.
    limit_key: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # The model groups the caller may use (fallbacks included); None: every group.
    groups: frozenset[str] | None = None
    # May call operators' RPCs (InvalidateCache).
    admin: bool = False

    @property
    def team(self) -> str | None:
        """The team whose budget and spend this caller shares (key metadata `team`)."""
        return self.metadata.get("team") or None


@dataclass(frozen=True, slots=True)
class AutoChoice:
    """How an `auto` alias classified a prompt and which group it chose."""

    tier: str
    score: float
    reason: str
    model_group: str


@dataclass(frozen=True, slots=True)
class AliasChoice:
    """The alias a caller named, kept once the request names its group instead."""

    name: str
    auto: AutoChoice | None = None


class FormatKind(enum.Enum):
    __hash__ = object.__hash__

    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The shape the answer must take; `schema` is a JSON Schema (JSON_SCHEMA only)."""

    kind: FormatKind = FormatKind.TEXT
    name: str = ""
    schema: Mapping[str, Any] | None = None
    strict: bool = False

    @property
    def wants_json(self) -> bool:
        return self.kind is not FormatKind.TEXT

    def openai(self) -> dict[str, Any]:
        """As OpenAI's `response_format` (what litellm takes and translates)."""
        if self.kind is FormatKind.JSON_SCHEMA:
            spec: dict[str, Any] = {"name": self.name, "schema": dict(self.schema or {})}
            if self.strict:
                spec["strict"] = True
            return {"type": "json_schema", "json_schema": spec}
        return {"type": self.kind.value}


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Options some providers take; unset (None, empty) ones are not sent."""

    user: str = ""
    parallel_tool_calls: bool | None = None
    reasoning_effort: str = ""
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    extra_params: Mapping[str, Any] = field(default_factory=dict)
    # Answers to generate; None: one.
    n: int | None = None

    @property
    def answers(self) -> int:
        return self.n or 1

    def openai(self) -> dict[str, Any]:
        """The options set, under OpenAI's names (extra_params not included)."""
        fields: dict[str, Any] = {}
        if self.user:
            fields["user"] = self.user
        if self.parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = self.parallel_tool_calls
        if self.reasoning_effort:
            fields["reasoning_effort"] = self.reasoning_effort
        if self.logit_bias:
            fields["logit_bias"] = {str(k): v for k, v in self.logit_bias.items()}
        if self.logprobs is not None:
            fields["logprobs"] = self.logprobs
        if self.top_logprobs is not None:
            fields["top_logprobs"] = self.top_logprobs
        if self.n is not None:
            fields["n"] = self.n
        return fields


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A validated request for a model group or alias."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    tools: tuple[Tool, ...] = ()
    tool_choice: str = ""
    cache: CacheControl = CacheControl()
    metadata: Mapping[str, str] = field(default_factory=dict)
    # A failure to inject (staging tests of fallbacks); see switchboard.faults.
    fault: InjectedFault | None = None
    # The authenticated caller; None when no caller keys are configured.
    caller: Caller | None = None
    # Set once an alias was expanded: `model` then names the group it chose.
    alias: AliasChoice | None = None
    # None: plain text.
    response_format: ResponseFormat | None = None
    # Check the answer against `response_format`; None: the server's setting.
    validate_json: bool | None = None
    options: RequestOptions = RequestOptions()


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class RateLimitHint:
    """What the provider's headers say is left of its own limits (None: not said)."""

    requests_remaining: int | None = None
    tokens_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_reset_s: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """What one deployment answered, before the gateway adds its own facts."""

    id: str
    model: str
    message: Message
    finish_reason: FinishReason
    usage: Usage
    rate_limit: RateLimitHint | None = None
    # Every answer, in order, when several were asked for (n > 1); `message` is the first.
    choices: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ProviderChunk:
    """One streamed piece from a deployment.

    The last chunk of a stream carries `finish_reason` and, where the provider
    reports it, `usage`; earlier chunks carry text or tool-call fragments.
    `pieces` counts the upstream events with text a chunk stands for (one,
    unless events that arrived together were merged): with no usage
    reported, each is taken as about one token.
    """

    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    id: str = ""
    model: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    pieces: int = 1


@dataclass(frozen=True, slots=True)
class Attempt:
    deployment: str
    model_group: str
    outcome: Outcome
    latency_s: float
    error: str = ""
    # What a failed attempt was billed for all the same (an answer refused as invalid).
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What the gateway did to obtain an answer; shared by both call shapes."""

    deployment: str
    model_group: str
    attempts: tuple[Attempt, ...]
    fallback_depth: int
    cost_usd: float = 0.0
    cache_hit: bool = False
    # The routing decision, for the response and the trace.
    strategy: str = ""
    explored: bool = False
    # The eligible deployments the answering decision chose among.
    candidates: tuple[str, ...] = ()
    # Time spent waiting for limiter headroom or a cooldown to end.
    queued_s: float = 0.0
    # Set when the answer came from the cache (then cache_hit is true and cost_usd 0).
    cache: CacheFacts | None = None
    # The alias the caller named, and an auto alias's decision.
    alias: AliasChoice | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    response: ProviderResponse
    route: RouteFacts


@dataclass(frozen=True, slots=True)
class StreamDelta:
    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamFinal:
    id: str
    model: str
    finish_reason: FinishReason
    usage: Usage
    route: RouteFacts
    time_to_first_chunk_s: float
    # Why the streamed answer is not the JSON asked for (validation on); empty when it is.
    validation_error: str = ""


StreamEvent = StreamDelta | StreamFinal
