"""Protobuf <-> domain types, with validation of what callers send.

The only module (with the servicer) that touches generated protobuf code.
A request is checked whole before anything is called, and its problems are
reported at once as field violations naming each field's path: the first
`InvalidRequest.MAX_VIOLATIONS` of them, and a count of the rest.

Validation costs no more than the request's size allows, whatever its
shape: a request over a count limit is refused on the counts alone, before
anything walks its elements; the costly checks (call arguments as JSON,
tool schemas) run last, within the prompt's character limit and a budget of
schema values, and are skipped once the report is full. A request at the
server's message size limit is validated in milliseconds (the bound is
tested in tests/unit/test_convert_limits.py).

The limits below are the common ground of the providers behind a model
group: a request that one deployment would refuse must not reach a
fallback that accepts it, nor be half-sent before one refuses it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from switchboard.accounting import CallStats, Period
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.cache.service import CacheStats
from switchboard.domain import (
    Attempt,
    AudioPart,
    CacheControl,
    CacheFacts,
    CacheKind,
    Caller,
    Completion,
    CompletionRequest,
    FilePart,
    FinishReason,
    FormatKind,
    ImagePart,
    Message,
    Outcome,
    Part,
    RequestOptions,
    ResponseFormat,
    Role,
    RouteFacts,
    Sampling,
    StreamDelta,
    StreamFinal,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from switchboard.errors import FieldViolation, InvalidRequest
from switchboard.gateway import DeploymentStatus
from switchboard.json_output import schema_problem
from switchboard.limits.budgets import BudgetLine
from switchboard.routing import HealthState

MAX_TOKENS_LIMIT = 1_000_000
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_MESSAGES = 2048
# Message contents, tool call arguments and tool definitions together: about
# half a million tokens, more than any model's context window.
MAX_PROMPT_CHARS = 2_000_000
# Multimodal parts: how many, how big inline, and where a URL may point.
MAX_PARTS = 64
MAX_TOTAL_PARTS = 256
MAX_INLINE_BYTES = 5 * 1024 * 1024
MAX_URL_CHARS = 8192
URL_SCHEMES = frozenset({"https", "http"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
IMAGE_DETAILS = frozenset({"", "low", "high", "auto"})
AUDIO_FORMATS = frozenset({"wav", "mp3"})
FILE_TYPES = frozenset({"application/pdf", "text/plain", "text/markdown", "text/csv"})
# Provider options.
MAX_USER_CHARS = 256
REASONING_EFFORTS = frozenset({"minimal", "low", "medium", "high"})
MAX_LOGIT_BIAS = 300
MAX_TOP_LOGPROBS = 20
MAX_N = 8
# What extra_params may not set: the request's own fields and what the gateway decides.
RESERVED_PARAMS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "tools", "tool_choice",
        "response_format", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "stop", "seed", "presence_penalty", "frequency_penalty", "user",
        "parallel_tool_calls", "reasoning_effort", "logit_bias", "logprobs", "top_logprobs",
        "n", "timeout", "api_key", "api_base", "base_url", "api_version", "num_retries",
        "max_retries", "metadata", "drop_params", "extra_headers", "headers",
    }
)  # fmt: skip
MAX_TOOLS = 128
MAX_TOOL_CALLS = 128
# Tool calls in the whole conversation: an agent's long history fits, while
# a request of empty calls in every message is refused on its counts.
MAX_TOTAL_TOOL_CALLS = 1024
# JSON values (objects, arrays, strings, numbers...) in all tool parameter
# schemas together: 32 a tool at MAX_TOOLS, several times a typical function's.
# Reading a schema out of protobuf costs a few microseconds a value, so this,
# not the bytes, bounds what the schemas cost.
MAX_SCHEMA_VALUES = 4096
# Model names, message names and tool call ids.
MAX_NAME_CHARS = 256
MAX_METADATA = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
MAX_CACHE_TTL_S = 30 * 24 * 3600
MAX_CACHE_NAMESPACE_CHARS = 256
MAX_CACHE_TAGS = 64
MAX_CACHE_TAG_CHARS = 256
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_CHOICES = ("auto", "none", "required")
# How much caller text a violation may quote.
_QUOTE_CHARS = 64
# Call arguments up to this many characters in all are checked by json.loads;
# beyond it by SQLite's JSON parser, which allocates no Python object per
# value: json.loads costs up to ~0.3 µs a value, so two million characters
# of `[],[],...` would cost a quarter of a second where SQLite takes ~15 ms.
_SMALL_ARGUMENTS_CHARS = 16 * 1024
# SQLite's default bound on the parameters of one statement (before 3.32).
_SQLITE_PARAMETERS = 999
_JSON_OBJECT = re.compile(r"[ \t\n\r]*\{")

P = TypeVar("P", bound=ProtoMessage)

# The roles as globals: `Role.USER` looks the member up on the class, ~50 ns a time.
_SYSTEM, _USER, _ASSISTANT, _TOOL = Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL
_ROLES = {
    pb.ROLE_SYSTEM: _SYSTEM,
    pb.ROLE_USER: _USER,
    pb.ROLE_ASSISTANT: _ASSISTANT,
    pb.ROLE_TOOL: _TOOL,
}
_FINISH = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
}
_OUTCOMES = {
    Outcome.SUCCESS: pb.ATTEMPT_OUTCOME_SUCCESS,
    Outcome.RATE_LIMITED: pb.ATTEMPT_OUTCOME_RATE_LIMITED,
    Outcome.TIMEOUT: pb.ATTEMPT_OUTCOME_TIMEOUT,
    Outcome.UNAVAILABLE: pb.ATTEMPT_OUTCOME_UNAVAILABLE,
    Outcome.BAD_REQUEST: pb.ATTEMPT_OUTCOME_BAD_REQUEST,
    Outcome.CONTEXT_WINDOW_EXCEEDED: pb.ATTEMPT_OUTCOME_CONTEXT_WINDOW_EXCEEDED,
    Outcome.CONTENT_POLICY: pb.ATTEMPT_OUTCOME_CONTENT_POLICY,
    Outcome.AUTHENTICATION: pb.ATTEMPT_OUTCOME_AUTHENTICATION,
    Outcome.NOT_FOUND: pb.ATTEMPT_OUTCOME_NOT_FOUND,
    Outcome.CANCELLED: pb.ATTEMPT_OUTCOME_CANCELLED,
    Outcome.INTERNAL: pb.ATTEMPT_OUTCOME_INTERNAL,
    Outcome.INVALID_OUTPUT: pb.ATTEMPT_OUTCOME_INVALID_OUTPUT,
}


def decode(message_type: type[P], data: bytes) -> P:
    """Parse a payload, refusing it as the caller's mistake rather than the server's.

    The parser's reason (bad UTF-8, corrupt wire format, nesting too deep) is
    kept: it is short, fixed text from the library, and it tells a client
    author what to fix.
    """
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        reason = str(exc).rsplit(": ", 1)[-1]
    except Exception:  # upb also raises on limits it enforces; the payload is still at fault
        reason = "cannot be parsed"
    full_name = message_type.DESCRIPTOR.full_name
    raise InvalidRequest([FieldViolation("request", f"not a valid {full_name}: {reason}")])


class _Violations:
    """The report being built: the first violations kept, the rest only counted.

    Called as `bad(field, description)`. Once the report is `full`, the
    costly checks are skipped (and the report says so): they could only add
    to the count.
    """

    __slots__ = ("kept", "more", "skipped")

    def __init__(self) -> None:
        self.kept: list[FieldViolation] = []
        self.more = 0
        self.skipped = False

    def __call__(self, field: str, description: str) -> None:
        if len(self.kept) < InvalidRequest.MAX_VIOLATIONS:
            self.kept.append(FieldViolation(field, description))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.kept)

    @property
    def full(self) -> bool:
        return len(self.kept) >= InvalidRequest.MAX_VIOLATIONS

    def skip(self) -> bool:
        """True (and noted) when a costly check should not run."""
        if self.full:
            self.skipped = True
        return self.full

    def error(self) -> InvalidRequest:
        return InvalidRequest(self.kept, more=self.more, complete=not self.skipped)


def request_from_proto(msg: pb.CompleteRequest, caller: Caller | None = None) -> CompletionRequest:
    """A validated domain request from `caller`, or InvalidRequest naming its violations.

    Runs on every call, so a common request (plain messages, no tools, options
    or metadata) pays only for what it holds: each optional part is checked
    for presence once, and its walk skipped when it is absent.
    """
    bad = _Violations()
    # Each read of a repeated or map field builds a new container: read each once.
    pb_messages, pb_stop, pb_tools, pb_metadata = msg.messages, msg.stop, msg.tools, msg.metadata

    calls, parts = _counts(pb_messages, pb_stop, pb_tools, pb_metadata, bad)
    if bad:
        raise bad.error()

    model = msg.model  # each read of a string field decodes it again: read once
    if len(model) > MAX_NAME_CHARS:
        bad("model", f"at most {MAX_NAME_CHARS} characters")
    elif not model.strip():
        bad("model", "must name a model group or alias")
    if not pb_messages:
        bad("messages", "must contain at least one message")
    messages = _messages(pb_messages, bad, plain=not (calls or parts))
    if not bad.skipped:
        _turns(messages, bad, calls)

    sampling = _sampling(msg, pb_stop, bad)

    budget = _SchemaBudget()
    tools: tuple[Tool, ...] = ()
    names: set[str] = set()
    if pb_tools:
        tools = tuple(_tool(t, f"tools[{i}]", bad, budget) for i, t in enumerate(pb_tools))
        names = _tool_names(tools, bad)
    choice = msg.tool_choice
    if choice and choice not in TOOL_CHOICES and choice not in names:
        bad("tool_choice", "must be auto, none, required or the name of a tool in tools")
    if choice == "required" and not tools:
        bad("tool_choice", "required needs at least one tool")

    prompt_chars = _prompt_chars(messages, tools, budget, calls=calls, parts=parts)
    if prompt_chars > MAX_PROMPT_CHARS:
        bad("messages", f"{prompt_chars} prompt characters; at most {MAX_PROMPT_CHARS}")
    elif calls:  # last, and only within the prompt limit: its cost grows with the text
        _arguments(messages, bad)

    has = msg.HasField
    response_format = (
        _response_format(msg.response_format, bad, budget) if has("response_format") else None
    )
    options = _options(msg, bad, budget)
    # Unset, the cache field reads as all defaults: the shared default is the same value.
    cache = _cache_control(msg.cache, bad) if has("cache") else _NO_CACHE_CONTROL
    metadata: dict[str, str] = {}
    if pb_metadata:  # dict() of a map field costs half a microsecond, even empty
        metadata = dict(pb_metadata)
        _check_metadata(metadata, bad)

    if bad:
        raise bad.error()
    return CompletionRequest(
        model=model,
        messages=messages,
        sampling=sampling,
        tools=tools,
        tool_choice=choice,
        cache=cache,
        metadata=metadata,
        caller=caller,
        response_format=response_format,
        validate_json=msg.validate_json if has("validate_json") else None,
        options=options,
    )


def _sampling(msg: pb.CompleteRequest, pb_stop: Sequence[str], bad: _Bad) -> Sampling:
    has = msg.HasField
    max_tokens = msg.max_tokens if has("max_tokens") else None
    temperature = msg.temperature if has("temperature") else None
    top_p = msg.top_p if has("top_p") else None
    presence = msg.presence_penalty if has("presence_penalty") else None
    frequency = msg.frequency_penalty if has("frequency_penalty") else None
    if max_tokens is not None and not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        bad("max_tokens", f"must be between 1 and {MAX_TOKENS_LIMIT}")
    if not (temperature is None and top_p is None and presence is None and frequency is None):
        _in_range(temperature, "temperature", 0.0, 2.0, bad)
        _in_range(top_p, "top_p", 0.0, 1.0, bad)
        _in_range(presence, "presence_penalty", -2.0, 2.0, bad)
        _in_range(frequency, "frequency_penalty", -2.0, 2.0, bad)
    stop: tuple[str, ...] = ()
    if pb_stop:
        stop = tuple(pb_stop)
        for i, text in enumerate(stop):
            if not text:
                bad(f"stop[{i}]", "must not be empty")
            elif len(text) > MAX_STOP_CHARS:
                bad(f"stop[{i}]", f"at most {MAX_STOP_CHARS} characters")
    return Sampling(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        seed=msg.seed if has("seed") else None,
        presence_penalty=presence,
        frequency_penalty=frequency,
    )


def _tool_names(tools: Sequence[Tool], bad: _Bad) -> set[str]:
    """The tools' names, each used once."""
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.name
        if name in seen:
            bad(f"tools[{i}].name", f"duplicate tool name {name[:_QUOTE_CHARS]!r}")
        seen.add(name)
    return seen


def _prompt_chars(
    messages: Sequence[Message],
    tools: Sequence[Tool],
    budget: _SchemaBudget,
    *,
    calls: int,
    parts: int,
) -> int:
    """Message contents, call arguments, text parts, tool descriptions and schemas.

    `calls` and `parts`: how many the messages hold in all; the sums over
    them are skipped when there are none.
    """
    chars = budget.chars + sum(len(m.content) for m in messages)
    if calls:
        chars += sum(len(c.arguments) for m in messages for c in m.tool_calls)
    if parts:
        chars += sum(len(p.text) for m in messages for p in m.parts if isinstance(p, TextPart))
    if tools:
        chars += sum(len(t.description) for t in tools)
    return chars


def _check_metadata(metadata: dict[str, str], bad: _Bad) -> None:
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            bad(f"metadata[{key[:_QUOTE_CHARS]!r}]", "keys are 1-128 characters")
        elif len(value) > MAX_METADATA_VALUE_CHARS:
            bad(
                f"metadata[{key[:_QUOTE_CHARS]!r}]",
                f"at most {MAX_METADATA_VALUE_CHARS} characters",
            )


# What a request that sets no option gets: the default value, shared (it is
# frozen, and nothing changes its maps) rather than built anew on each call.
_NO_OPTIONS = RequestOptions()


def _options(msg: pb.CompleteRequest, bad: _Violations, budget: _SchemaBudget) -> RequestOptions:
    """The provider options, bounded; extra_params may not set what the gateway sets."""
    user, effort, pb_bias = msg.user, msg.reasoning_effort, msg.logit_bias
    has = msg.HasField
    logprobs = msg.logprobs if has("logprobs") else None
    top = msg.top_logprobs if has("top_logprobs") else None
    n = msg.n if has("n") else None
    parallel = msg.parallel_tool_calls if has("parallel_tool_calls") else None
    has_extra = has("extra_params")
    if not (user or effort or pb_bias or has_extra) and (
        logprobs is None and top is None and n is None and parallel is None
    ):
        return _NO_OPTIONS
    if len(user) > MAX_USER_CHARS:
        bad("user", f"at most {MAX_USER_CHARS} characters")
    if effort and effort not in REASONING_EFFORTS:
        bad("reasoning_effort", "must be minimal, low, medium or high")
    bias: dict[int, float] = {}
    if pb_bias:  # dict() of a map field costs half a microsecond, even empty
        bias = dict(pb_bias)
        if len(bias) > MAX_LOGIT_BIAS:
            bad("logit_bias", f"{len(bias)} entries; at most {MAX_LOGIT_BIAS}")
        elif any(not (0 <= token < 2**31) for token in bias):
            bad("logit_bias", "token ids are between 0 and 2^31")
        elif any(not (math.isfinite(v) and -100 <= v <= 100) for v in bias.values()):
            bad("logit_bias", "biases must be between -100 and 100")
    if top is not None:
        if top > MAX_TOP_LOGPROBS:
            bad("top_logprobs", f"must be between 0 and {MAX_TOP_LOGPROBS}")
        elif not logprobs:
            bad("top_logprobs", "needs logprobs: true")
    extra: dict[str, Any] = {}
    if has_extra and budget.left >= 0 and not bad.skip():
        extra = _json(msg.extra_params, "extra_params", budget, bad) or {}
        taken = sorted(set(extra) & RESERVED_PARAMS)
        if taken:
            bad("extra_params", f"may not set {', '.join(taken)}: use the request's own fields")
    if n is not None and not 1 <= n <= MAX_N:
        bad("n", f"must be between 1 and {MAX_N}")
    return RequestOptions(
        n=n,
        user=user,
        parallel_tool_calls=parallel,
        reasoning_effort=effort,
        logit_bias=bias,
        logprobs=logprobs,
        top_logprobs=top,
        extra_params=extra,
    )


_Bad = Callable[[str, str], None]

_FORMAT_KINDS = {
    pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED: FormatKind.TEXT,
    pb.RESPONSE_FORMAT_TYPE_TEXT: FormatKind.TEXT,
    pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT: FormatKind.JSON_OBJECT,
    pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: FormatKind.JSON_SCHEMA,
}


def _response_format(
    rf: pb.ResponseFormat, bad: _Violations, budget: _SchemaBudget
) -> ResponseFormat | None:
    """The requested answer shape (the field is set); None for plain text. A schema
    shares the tools' budget."""
    kind = _FORMAT_KINDS.get(rf.type)
    if kind is None:
        bad("response_format.type", f"unknown type {rf.type}")
        return None
    if kind is not FormatKind.JSON_SCHEMA:
        if rf.name or rf.HasField("schema") or rf.strict:
            bad("response_format", "name, schema and strict are for JSON_SCHEMA only")
        return None if kind is FormatKind.TEXT else ResponseFormat(kind)
    name = rf.name
    if not TOOL_NAME.match(name):
        bad("response_format.name", "must be 1-64 letters, digits, _ or -")
    if not rf.HasField("schema"):
        bad("response_format.schema", "required with JSON_SCHEMA")
        return None
    if budget.left < 0 or bad.skip():
        return None
    schema = _json(rf.schema, "response_format.schema", budget, bad)
    if schema is None:
        return None
    problem = schema_problem(schema)
    if problem is not None:
        bad("response_format.schema", problem)
    return ResponseFormat(kind, name=name, schema=schema, strict=rf.strict)


_NO_CACHE_CONTROL = CacheControl()


def _cache_control(msg: pb.CacheControl, bad: _Bad) -> CacheControl:
    ttl = msg.ttl_seconds if msg.HasField("ttl_seconds") else None
    if ttl is not None and not 0 < ttl <= MAX_CACHE_TTL_S:
        bad("cache.ttl_seconds", f"between 1 and {MAX_CACHE_TTL_S} (30 days)")
    namespace, tags = cache_scope(msg.namespace, msg.tags, bad, "cache.")
    similarity = msg.min_similarity if msg.HasField("min_similarity") else None
    _in_range(similarity, "cache.min_similarity", 0.0, 1.0, bad)
    return CacheControl(
        no_cache=msg.no_cache,
        no_store=msg.no_store,
        ttl_seconds=ttl,
        namespace=namespace,
        tags=tags,
        semantic=msg.semantic if msg.HasField("semantic") else None,
        min_similarity=similarity,
    )


def cache_scope(
    namespace: str, tags: Sequence[str], bad: _Bad, prefix: str = ""
) -> tuple[str, tuple[str, ...]]:
    """A namespace and tags within their bounds; shared by requests and InvalidateCache."""
    if len(namespace) > MAX_CACHE_NAMESPACE_CHARS:
        bad(f"{prefix}namespace", f"at most {MAX_CACHE_NAMESPACE_CHARS} characters")
    if len(tags) > MAX_CACHE_TAGS:
        bad(f"{prefix}tags", f"{len(tags)} tags; at most {MAX_CACHE_TAGS}")
        return namespace, ()
    for i, tag in enumerate(tags):
        if not tag or len(tag) > MAX_CACHE_TAG_CHARS:
            bad(f"{prefix}tags[{i}]", f"tags are 1-{MAX_CACHE_TAG_CHARS} characters")
    return namespace, tuple(dict.fromkeys(tags))


def invalidate_request(msg: pb.InvalidateCacheRequest) -> tuple[str | None, tuple[str, ...]]:
    """The namespace (None: every namespace) and tags an invalidation names."""
    bad = _Violations()
    namespace, tags = cache_scope(msg.namespace, msg.tags, bad)
    if not namespace and not tags:
        bad("tags", "name the tags to invalidate, or a namespace to drop")
    if bad:
        raise bad.error()
    return namespace or None, tags


def _in_range(value: float | None, field: str, low: float, high: float, bad: _Bad) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        bad(field, f"must be between {low:g} and {high:g}")


def _counts(
    messages: Sequence[pb.Message],
    stop: Sequence[str],
    tools: Sequence[pb.Tool],
    metadata: Mapping[str, str],
    bad: _Bad,
) -> tuple[int, int]:
    """Repeated fields over their limits; `len` of a parsed field builds no Python objects.

    Returns the tool calls and the content parts of all messages.
    """
    if (
        len(messages) > MAX_MESSAGES
        or len(stop) > MAX_STOP_SEQUENCES
        or len(tools) > MAX_TOOLS
        or len(metadata) > MAX_METADATA
    ):
        for field, count, limit in (
            ("messages", len(messages), MAX_MESSAGES),
            ("stop", len(stop), MAX_STOP_SEQUENCES),
            ("tools", len(tools), MAX_TOOLS),
            ("metadata", len(metadata), MAX_METADATA),
        ):
            if count > limit:
                bad(field, f"{count} entries; at most {limit}")
        if len(messages) > MAX_MESSAGES:
            return 0, 0
    calls = parts = 0
    over = False
    for m in messages:
        count_calls, count_parts = len(m.tool_calls), len(m.parts)
        calls += count_calls
        parts += count_parts
        if count_calls > MAX_TOOL_CALLS or count_parts > MAX_PARTS:
            over = True
    if over or calls > MAX_TOTAL_TOOL_CALLS or parts > MAX_TOTAL_PARTS:
        _count_violations(messages, calls, parts, bad)
    return calls, parts


def _count_violations(messages: Sequence[pb.Message], calls: int, parts: int, bad: _Bad) -> None:
    """The messages' tool calls and parts over their limits: each message's, then all."""
    for i, m in enumerate(messages):
        if len(m.tool_calls) > MAX_TOOL_CALLS:
            bad(f"messages[{i}].tool_calls", f"at most {MAX_TOOL_CALLS} tool calls")
    if calls > MAX_TOTAL_TOOL_CALLS:
        bad("messages", f"{calls} tool calls in all; at most {MAX_TOTAL_TOOL_CALLS}")
    for i, m in enumerate(messages):
        if len(m.parts) > MAX_PARTS:
            bad(f"messages[{i}].parts", f"at most {MAX_PARTS} parts")
    if parts > MAX_TOTAL_PARTS:
        bad("messages", f"{parts} content parts in all; at most {MAX_TOTAL_PARTS}")


def _messages(
    pb_messages: Sequence[pb.Message], bad: _Violations, *, plain: bool
) -> tuple[Message, ...]:
    """The messages, until the report is full: past that, the request is refused anyway.

    `plain`: no message has tool calls or parts (the counts said so).
    """
    out = []
    for i, m in enumerate(pb_messages):
        if bad.full:
            bad.skipped = True
            break
        out.append(_message(m, i, bad, plain=plain))
    return tuple(out)


def _message(m: pb.Message, i: int, bad: _Bad, *, plain: bool) -> Message:
    # Each read of a field builds a new Python object: read each once, and the
    # repeated ones not at all when `plain` says they are empty. Two thousand
    # messages make this the hot loop of a large request.
    content, name, tool_call_id, role_number = m.content, m.name, m.tool_call_id, m.role
    known = _ROLES.get(role_number)
    if known is None:
        bad(f"messages[{i}].role", "must be ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL")
    role = known or _USER
    if role is _TOOL and not tool_call_id:
        bad(f"messages[{i}].tool_call_id", "a tool message must say which call it answers")
    if len(tool_call_id) > MAX_NAME_CHARS:
        bad(f"messages[{i}].tool_call_id", f"at most {MAX_NAME_CHARS} characters")
    if len(name) > MAX_NAME_CHARS:
        bad(f"messages[{i}].name", f"at most {MAX_NAME_CHARS} characters")
    pb_calls: Sequence[pb.ToolCall] = ()
    parts: tuple[Part, ...] = ()
    if not plain:
        pb_calls, pb_parts = m.tool_calls, m.parts
        if pb_calls and role is not _ASSISTANT:
            bad(f"messages[{i}].tool_calls", "only assistant messages carry tool calls")
        if pb_parts:
            parts = tuple(
                _part(part, f"messages[{i}].parts[{j}]", role, bad)
                for j, part in enumerate(pb_parts)
            )
    # Some providers refuse empty text blocks; an assistant turn may be only calls.
    if known is _USER and not content and not parts:
        bad(f"messages[{i}].content", "a user message must not be empty")
    if role is _ASSISTANT and not content and not pb_calls:
        bad(f"messages[{i}].content", "an assistant message needs content or tool calls")
    calls: tuple[ToolCall, ...] = ()
    if pb_calls:  # iterating even an empty repeated field costs microseconds
        calls = tuple(
            _call(call, f"messages[{i}].tool_calls[{j}]", bad) for j, call in enumerate(pb_calls)
        )
    return Message(
        role=role,
        content=content,
        name=name,
        tool_calls=calls,
        tool_call_id=tool_call_id,
        parts=parts,
    )


def _part(part: pb.ContentPart, path: str, role: Role, bad: _Bad) -> Part:
    """One content part, bounded: inline bytes by size, URLs by scheme and length."""
    kind = part.WhichOneof("part")
    if kind == "text":
        if not part.text:
            bad(f"{path}.text", "must not be empty")
        return TextPart(part.text)
    if kind is None:
        bad(path, "must be a text, image, audio or file part")
        return TextPart("")
    if role is not _USER:
        bad(path, f"{kind} parts belong in user messages only")
    if kind == "image":
        image = part.image
        detail = image.detail
        if detail not in IMAGE_DETAILS:
            bad(f"{path}.image.detail", "must be low, high or auto")
        if image.WhichOneof("source") == "url":
            url = image.url
            _url(url, f"{path}.image.url", bad)
            return ImagePart(url=url, detail=detail)
        data, media_type = image.data, image.media_type
        _inline(data, f"{path}.image.data", bad)
        if media_type not in IMAGE_TYPES:
            bad(f"{path}.image.media_type", f"must be one of {', '.join(sorted(IMAGE_TYPES))}")
        return ImagePart(data=data, media_type=media_type, detail=detail)
    if kind == "audio":
        audio = part.audio
        _inline(audio.data, f"{path}.audio.data", bad)
        if audio.format not in AUDIO_FORMATS:
            bad(f"{path}.audio.format", "must be wav or mp3")
        return AudioPart(data=audio.data, format=audio.format)
    file = part.file
    _inline(file.data, f"{path}.file.data", bad)
    if file.media_type not in FILE_TYPES:
        bad(f"{path}.file.media_type", f"must be one of {', '.join(sorted(FILE_TYPES))}")
    if len(file.filename) > MAX_NAME_CHARS:
        bad(f"{path}.file.filename", f"at most {MAX_NAME_CHARS} characters")
    return FilePart(data=file.data, media_type=file.media_type, filename=file.filename)


def _url(url: str, path: str, bad: _Bad) -> None:
    if len(url) > MAX_URL_CHARS:
        bad(path, f"at most {MAX_URL_CHARS} characters")
        return
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in URL_SCHEMES or not rest:
        bad(path, "must be an https:// or http:// URL (inline bytes go in data)")


def _inline(data: bytes, path: str, bad: _Bad) -> None:
    if not data:
        bad(path, "must not be empty")
    elif len(data) > MAX_INLINE_BYTES:
        bad(path, f"{len(data)} bytes; at most {MAX_INLINE_BYTES}")


def _call(call: pb.ToolCall, path: str, bad: _Bad) -> ToolCall:
    call_id, name = call.id, call.name
    if not TOOL_NAME.match(name):
        bad(f"{path}.name", "must be 1-64 letters, digits, _ or -")
    if len(call_id) > MAX_NAME_CHARS:
        bad(f"{path}.id", f"at most {MAX_NAME_CHARS} characters")
    return ToolCall(id=call_id, name=name, arguments=call.arguments)


def _turns(messages: Sequence[Message], bad: _Bad, calls: int) -> None:
    """The order providers insist on: each tool call answered, right after it, exactly once.

    OpenAI and Anthropic both refuse a tool message that answers no pending
    call and an assistant's tool calls left unanswered by the next turn.
    `calls`: the tool calls in all messages; with none and no tool message,
    there is no order to check.
    """
    roles = [m.role for m in messages]
    if calls or _TOOL in roles:
        _answers(messages, bad)
    if roles and roles.count(_SYSTEM) == len(roles):
        bad("messages", "must contain a message other than system messages")


def _answers(messages: Sequence[Message], bad: _Bad) -> None:
    """Each tool call answered by a tool message right after its turn, exactly once."""
    pending: dict[str, str] = {}  # call id -> the path of the call
    seen: set[str] = set()

    def unanswered() -> None:
        for where in pending.values():
            bad(where, "no tool message right after this call answers it")
        pending.clear()

    for i, m in enumerate(messages):
        if m.role is _TOOL:
            if m.tool_call_id in pending:
                del pending[m.tool_call_id]
            elif m.tool_call_id:
                bad(
                    f"messages[{i}].tool_call_id",
                    "must answer an unanswered tool call of the assistant message before it",
                )
            continue
        unanswered()
        for j, call in enumerate(m.tool_calls if m.role is _ASSISTANT else ()):
            where = f"messages[{i}].tool_calls[{j}].id"
            if not call.id:
                bad(where, "must not be empty")
            elif call.id in seen:
                bad(where, f"duplicate tool call id {call.id[:_QUOTE_CHARS]!r}")
            else:
                seen.add(call.id)
                pending[call.id] = where
    unanswered()


def _arguments(messages: Sequence[Message], bad: _Violations) -> None:
    """Each call's arguments a JSON object, at a cost linear in their text."""
    calls = [
        (f"messages[{i}].tool_calls[{j}].arguments", c.arguments)
        for i, m in enumerate(messages)
        for j, c in enumerate(m.tool_calls)
        if c.arguments
    ]
    if not calls or bad.skip():
        return
    texts = [text for _, text in calls]
    if sum(map(len, texts)) <= _SMALL_ARGUMENTS_CHARS:
        verdicts = [_small_json_object(text) for text in texts]
    else:
        verdicts = _large_json_objects(texts)
    for (where, _), ok in zip(calls, verdicts, strict=True):
        if not ok:
            bad(where, "must be a JSON object")


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Held to RFC 8259 (no NaN or Infinity), as SQLite's parser is. Built once:
# json.loads with an argument builds a decoder per call, 5 µs each.
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _small_json_object(text: str) -> bool:
    try:
        parsed: object = _JSON.decode(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict)


def _large_json_objects(texts: Sequence[str]) -> list[bool]:
    """SQLite's json_valid (RFC 8259 text, nesting bounded) and a leading brace: an object."""
    verdicts: list[bool] = []
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        for start in range(0, len(texts), _SQLITE_PARAMETERS):
            chunk = texts[start : start + _SQLITE_PARAMETERS]
            query = "SELECT " + ", ".join(["json_valid(?)"] * len(chunk))
            row = db.execute(query, chunk).fetchone()
            verdicts.extend(
                bool(valid) and _JSON_OBJECT.match(text) is not None
                for valid, text in zip(row, chunk, strict=True)
            )
    return verdicts


class _SchemaBudget:
    """The schema values a request may still hold, and the characters they spell."""

    __slots__ = ("chars", "left")

    def __init__(self) -> None:
        self.left = MAX_SCHEMA_VALUES
        self.chars = 0

    def take(self, values: int) -> bool:
        self.left -= values
        return self.left >= 0


class _SchemaTooLarge(Exception):
    pass


class _NotFinite(Exception):
    pass


def _tool(t: pb.Tool, path: str, bad: _Violations, budget: _SchemaBudget) -> Tool:
    name = t.name
    if not TOOL_NAME.match(name):
        bad(f"{path}.name", "must be 1-64 letters, digits, _ or -")
    parameters: dict[str, Any] = {}
    if t.HasField("parameters") and budget.left >= 0 and not bad.skip():
        read = _json(t.parameters, f"{path}.parameters", budget, bad, whole="tools")
        if read is not None:
            parameters = read
            _schema(parameters, f"{path}.parameters", bad)
    return Tool(name=name, description=t.description, parameters=parameters)


def _json(
    struct: struct_pb2.Struct, path: str, budget: _SchemaBudget, bad: _Bad, *, whole: str = ""
) -> dict[str, Any] | None:
    """A Struct as a dict within the request's one budget of JSON values (tool schemas,
    the response schema and extra_params share it); None, and a violation, past it.

    `whole`: the field to name when the budget runs out (the sum is its fault).
    """
    try:
        return _struct(struct, budget)
    except _NotFinite:  # NaN and infinities have no JSON spelling
        bad(path, "numbers must be finite")
    except _SchemaTooLarge:
        bad(
            whole or path,
            f"more than {MAX_SCHEMA_VALUES} JSON values in tool schemas, the response "
            "schema and extra_params in all",
        )
    return None


def _struct(struct: struct_pb2.Struct, budget: _SchemaBudget) -> dict[str, Any]:
    """A Struct as a dict, counting its values against `budget` before reading them."""
    if not budget.take(len(struct.fields)):
        raise _SchemaTooLarge
    out: dict[str, Any] = {}
    for key, value in struct.fields.items():
        budget.chars += len(key) + 4  # the key's quotes, colon and comma
        out[key] = _value(value, budget)
    return out


def _value(value: struct_pb2.Value, budget: _SchemaBudget) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _struct(value.struct_value, budget)
    if kind == "list_value":
        items = value.list_value.values
        if not budget.take(len(items)):
            raise _SchemaTooLarge
        budget.chars += 2
        return [_value(item, budget) for item in items]
    if kind == "string_value":
        text = value.string_value
        budget.chars += len(text) + 2
        return text
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise _NotFinite
        budget.chars += 8
        return number
    if kind == "bool_value":
        budget.chars += 5
        return value.bool_value
    budget.chars += 4
    return None


def _schema(schema: dict[str, Any], path: str, bad: _Bad) -> None:
    """Enough of JSON Schema to know providers will take it: an object with typed fields."""
    if schema.get("type") != "object":
        bad(f"{path}.type", 'must be "object": the arguments of a call are a JSON object')
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(
        isinstance(p, dict) for p in properties.values()
    ):
        bad(f"{path}.properties", "must map each argument name to its schema object")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        bad(f"{path}.required", "must be a list of argument names")


# Response messages are built in one constructor call, their submessages given
# as dicts of fields: upb builds those in place, where a message built apart
# would then be copied in (and Duration.FromNanoseconds is Python-level code).
# An empty repeated field is left out: passing even [] costs a fifth of a µs.
# The stubs take only messages there, hence `dict[str, Any]` and the ignores.


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
    }


_NANOS_PER_SECOND = 10**9


def _duration(seconds: float) -> dict[str, int]:
    """A Duration's fields, as `Duration.FromNanoseconds(round(seconds * 1e9))` sets them."""
    whole, nanos = divmod(round(seconds * 1e9), _NANOS_PER_SECOND)
    if whole < 0 and nanos > 0:  # a negative duration's nanos are negative too
        whole += 1
        nanos -= _NANOS_PER_SECOND
    return {"seconds": whole, "nanos": nanos}


def _attempt(a: Attempt) -> dict[str, Any]:
    return {
        "deployment": a.deployment,
        "model_group": a.model_group,
        "outcome": _OUTCOMES[a.outcome],
        "latency": _duration(a.latency_s),
        "error": a.error,
    }


def _route_fields(route: RouteFacts) -> dict[str, Any]:
    """The fields CompleteResponse and Final share, as constructor arguments."""
    fields: dict[str, Any] = {
        "deployment": route.deployment,
        "model_group": route.model_group,
        "cost_usd": route.cost_usd,
        "cache_hit": route.cache_hit,
        "fallback_depth": route.fallback_depth,
        "routing": _routing(route),
    }
    if route.attempts:
        fields["attempts"] = [_attempt(a) for a in route.attempts]
    if route.cache is not None:
        fields["cache"] = _cache_hit(route.cache)
    return fields


_CACHE_KINDS = {CacheKind.EXACT: pb.CACHE_KIND_EXACT, CacheKind.SEMANTIC: pb.CACHE_KIND_SEMANTIC}


def _cache_hit(facts: CacheFacts) -> pb.CacheHit:
    hit = pb.CacheHit(
        kind=_CACHE_KINDS[facts.kind],
        similarity=facts.similarity,
        cost_saved_usd=facts.cost_saved_usd,
    )
    if math.isfinite(facts.created):
        created = min(max(facts.created, 0.0), float(_MAX_TIMESTAMP_S))
        hit.created.FromNanoseconds(round(created * 1e9))
    return hit


def cache_stats(stats: Sequence[CacheStats]) -> list[pb.CacheStats]:
    return [
        pb.CacheStats(
            name=s.name,
            backend=s.backend,
            entries=_clamp(s.entries, _UINT64) or 0,
            bytes=_clamp(s.bytes, _UINT64),
        )
        for s in stats
    ]


def _routing(route: RouteFacts) -> dict[str, Any]:
    decision: dict[str, Any] = {
        "strategy": route.strategy,
        "explored": route.explored,
        "queue_wait": _duration(route.queued_s),
    }
    if route.candidates:
        decision["candidates"] = route.candidates
    alias = route.alias
    if alias is not None:
        decision["alias"] = alias.name
        auto = alias.auto
        if auto is not None:
            decision["auto"] = {
                "tier": auto.tier,
                "score": auto.score,
                "reason": auto.reason,
                "model_group": auto.model_group,
            }
    return decision


def price(rates: tuple[float, float] | None) -> pb.Price | None:
    """Per 1,000 tokens; None when unknown (both rates 0), so the field stays unset."""
    if rates is None or not any(rates):
        return None
    per_input, per_output = rates
    return pb.Price(input_per_1k_usd=per_input * 1000, output_per_1k_usd=per_output * 1000)


def sampling_defaults(defaults: Sampling | None) -> pb.SamplingDefaults | None:
    if defaults is None:
        return None
    return pb.SamplingDefaults(
        max_tokens=defaults.max_tokens,
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        stop=defaults.stop,
        seed=defaults.seed,
        presence_penalty=defaults.presence_penalty,
        frequency_penalty=defaults.frequency_penalty,
    )


_STATE = {
    HealthState.HEALTHY: pb.DEPLOYMENT_STATE_HEALTHY,
    HealthState.COOLING_DOWN: pb.DEPLOYMENT_STATE_COOLING_DOWN,
    HealthState.RAMPING: pb.DEPLOYMENT_STATE_RAMPING,
}


# The last second a google.protobuf.Timestamp can hold: 9999-12-31T23:59:59Z.
_MAX_TIMESTAMP_S = 253_402_300_799
_UINT32 = 2**32 - 1
_UINT64 = 2**64 - 1


def deployment_status(
    status: DeploymentStatus, wall_offset_s: float, rates: tuple[float, float] | None = None
) -> pb.Deployment:
    """`wall_offset_s` turns the gateway's monotonic times into wall-clock ones.

    Never raises, whatever the numbers: a provider's Retry-After of `inf` or
    1e20 must not break ListModels. Counts are clamped to their fields'
    ranges, a cooldown end to a Timestamp's, and a non-finite one is left out.
    """
    d = status.deployment
    message = pb.Deployment(
        id=d.id,
        model=d.model,
        provider=d.provider,
        traffic_share=_share(status.health.share),
        price=price(rates),
        **_state(status),  # type: ignore[arg-type]
    )
    _cooldown(message.cooldown_until, status, wall_offset_s)
    return message


def deployment_stats(
    status: DeploymentStatus,
    wall_offset_s: float,
    calls: CallStats | None,
    paused_until: float | None,
) -> pb.DeploymentStats:
    """GetStats' line of a deployment; `paused_until` (monotonic): its provider is over
    budget, so routing skips it until then, as if it were cooling down."""
    d = status.deployment
    message = pb.DeploymentStats(
        id=d.id,
        model_group=d.model_group,
        calls=call_stats(calls),
        **_state(status),  # type: ignore[arg-type]
    )
    _cooldown(message.cooldown_until, status, wall_offset_s)
    if paused_until is not None:
        message.state = pb.DEPLOYMENT_STATE_COOLING_DOWN
        timestamp(message.cooldown_until, paused_until + wall_offset_s)
    return message


def _state(status: DeploymentStatus) -> dict[str, object]:
    """The fields ListModels and GetStats share: health, limits, headroom, load."""
    d = status.deployment
    return {
        "state": _STATE[status.health.state],
        "rpm_limit": _clamp(d.rpm, _UINT64),
        "tpm_limit": _clamp(d.tpm, _UINT64),
        "requests_remaining": _clamp(status.requests_remaining, _UINT64),
        "tokens_remaining": _clamp(status.tokens_remaining, _UINT64),
        "in_flight": _clamp(status.in_flight, _UINT32) or 0,
    }


def _cooldown(field: timestamp_pb2.Timestamp, status: DeploymentStatus, offset_s: float) -> None:
    until = status.health.until
    if until is not None:
        timestamp(field, until + offset_s)


def timestamp(field: timestamp_pb2.Timestamp, wall_s: float) -> None:
    """Set a Timestamp from wall seconds, clamped to its range; never raises on a number."""
    if not math.isfinite(wall_s):
        return
    nanos = round(min(max(wall_s, 0.0), 1e12) * 1e9)
    field.FromNanoseconds(min(nanos, _MAX_TIMESTAMP_S * 10**9))


def _clamp(value: float | None, high: int) -> int | None:
    """An unsigned field's value: None stays unset, NaN too, the rest clamped to 0..high."""
    if value is None or value != value:  # NaN; math.isnan would overflow on a huge int
        return None
    return int(min(max(value, 0), high))


def _share(value: float) -> float:
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


def complete_response(completion: Completion) -> pb.CompleteResponse:
    response = completion.response
    fields = _route_fields(completion.route)
    if response.choices:
        fields["choices"] = [_answer(m) for m in response.choices]
    return pb.CompleteResponse(
        id=response.id,
        model=response.model,
        message=_answer(response.message),  # type: ignore[arg-type]
        finish_reason=_FINISH[response.finish_reason],
        usage=_usage(response.usage),  # type: ignore[arg-type]
        **fields,
    )


def _answer(message: Message) -> dict[str, Any]:
    answer: dict[str, Any] = {"role": pb.ROLE_ASSISTANT, "content": message.content}
    if message.tool_calls:
        answer["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ]
    return answer


def stream_delta(delta: StreamDelta) -> pb.StreamCompleteResponse:
    return pb.StreamCompleteResponse(
        delta=pb.Delta(content=delta.content, tool_calls=[_tool_delta(d) for d in delta.tool_calls])
    )


def _tool_delta(d: ToolCallDelta) -> pb.ToolCallDelta:
    return pb.ToolCallDelta(index=d.index, id=d.id, name=d.name, arguments=d.arguments)


def stream_final(final: StreamFinal) -> pb.StreamCompleteResponse:
    event = pb.Final(
        id=final.id,
        model=final.model,
        finish_reason=_FINISH[final.finish_reason],
        usage=_usage(final.usage),  # type: ignore[arg-type]
        validation_error=final.validation_error,
        **_route_fields(final.route),
    )
    event.time_to_first_chunk.FromNanoseconds(round(final.time_to_first_chunk_s * 1e9))
    return pb.StreamCompleteResponse(final=event)


_PERIODS = {
    pb.STATS_PERIOD_UNSPECIFIED: Period.DAY,
    pb.STATS_PERIOD_HOUR: Period.HOUR,
    pb.STATS_PERIOD_DAY: Period.DAY,
    pb.STATS_PERIOD_MONTH: Period.MONTH,
    pb.STATS_PERIOD_TOTAL: Period.TOTAL,
}
_PERIODS_PB = {v: k for k, v in _PERIODS.items() if k != pb.STATS_PERIOD_UNSPECIFIED}


def stats_period(msg: pb.GetStatsRequest) -> Period:
    """The requested period; unspecified is today, an unknown number is the caller's mistake."""
    period = _PERIODS.get(msg.period)
    if period is None:
        raise InvalidRequest(
            [FieldViolation("period", f"unknown period {msg.period}; expected STATS_PERIOD_*")]
        )
    return period


def stats_period_pb(period: Period) -> pb.StatsPeriod.ValueType:
    return _PERIODS_PB[period]


def call_stats(stats: CallStats | None) -> pb.CallStats:
    """Figures of one entity; an entity with no call yet reads as zeros."""
    if stats is None:
        return pb.CallStats()
    message = pb.CallStats(
        requests=_clamp(stats.requests, _UINT64) or 0,
        errors={k: _clamp(v, _UINT64) or 0 for k, v in stats.errors.items()},
        input_tokens=_clamp(stats.input_tokens, _UINT64) or 0,
        output_tokens=_clamp(stats.output_tokens, _UINT64) or 0,
        spend_usd=_money(stats.spend_usd),
        saved_usd=_money(stats.saved_usd),
        cache_hits=_clamp(stats.cache_hits, _UINT64) or 0,
        cache_hit_rate=_share(stats.cache_hit_rate),
    )
    for field, seconds in ((message.latency_p50, stats.latency_p50_s),
                           (message.latency_p95, stats.latency_p95_s)):  # fmt: skip
        if seconds is not None and math.isfinite(seconds):
            field.FromNanoseconds(round(min(max(seconds, 0.0), 1e9) * 1e9))
    return message


def budget_status(line: BudgetLine | None) -> pb.BudgetStatus | None:
    if line is None:
        return None
    message = pb.BudgetStatus(
        max_budget_usd=_money(line.budget.max_usd),
        spend_usd=_money(line.spend_usd),
        remaining_usd=_money(line.remaining_usd),
        duration=line.budget.duration or "",
    )
    if line.resets_at is not None:
        timestamp(message.resets_at, line.resets_at)
    return message


def _money(value: float) -> float:
    return value if math.isfinite(value) and value >= 0 else 0.0
