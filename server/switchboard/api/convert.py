"""Protobuf <-> domain types, with validation of what callers send.

The only module (with the servicer) that touches generated protobuf code.
A request is checked whole before anything is called, and every problem is
reported at once as a field violation naming the field's path. The one
exception is size: a request over a count limit is refused on the counts
alone, before anything walks its elements, so a hostile request costs no
more than its parse.

The limits below are the common ground of the providers behind a model
group: a request that one deployment would refuse must not reach a
fallback that accepts it, nor be half-sent before one refuses it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.domain import (
    Attempt,
    CacheControl,
    Caller,
    Completion,
    CompletionRequest,
    FinishReason,
    Message,
    Outcome,
    Role,
    RouteFacts,
    Sampling,
    StreamDelta,
    StreamFinal,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from switchboard.errors import FieldViolation, InvalidRequest
from switchboard.gateway import DeploymentStatus
from switchboard.routing import HealthState

MAX_TOKENS_LIMIT = 1_000_000
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_MESSAGES = 2048
# Message contents, tool call arguments and tool definitions together: about
# half a million tokens, more than any model's context window.
MAX_PROMPT_CHARS = 2_000_000
MAX_TOOLS = 128
MAX_TOOL_CALLS = 128
# Model names, message names and tool call ids.
MAX_NAME_CHARS = 256
MAX_METADATA = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
MAX_CACHE_TTL_S = 30 * 24 * 3600
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_CHOICES = ("auto", "none", "required")

P = TypeVar("P", bound=ProtoMessage)

_ROLES = {
    pb.ROLE_SYSTEM: Role.SYSTEM,
    pb.ROLE_USER: Role.USER,
    pb.ROLE_ASSISTANT: Role.ASSISTANT,
    pb.ROLE_TOOL: Role.TOOL,
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


def request_from_proto(msg: pb.CompleteRequest, caller: Caller | None = None) -> CompletionRequest:
    """A validated domain request from `caller`, or InvalidRequest listing every violation."""
    problems: list[FieldViolation] = []

    def bad(field: str, description: str) -> None:
        problems.append(FieldViolation(field, description))

    _counts(msg, bad)
    if problems:
        raise InvalidRequest(problems)

    if len(msg.model) > MAX_NAME_CHARS:
        bad("model", f"at most {MAX_NAME_CHARS} characters")
    elif not msg.model.strip():
        bad("model", "must name a model group or alias")
    if not msg.messages:
        bad("messages", "must contain at least one message")
    messages = tuple(_message(m, f"messages[{i}]", bad) for i, m in enumerate(msg.messages))
    _turns(messages, bad)

    sampling = Sampling(
        max_tokens=msg.max_tokens if msg.HasField("max_tokens") else None,
        temperature=msg.temperature if msg.HasField("temperature") else None,
        top_p=msg.top_p if msg.HasField("top_p") else None,
        stop=tuple(msg.stop),
        seed=msg.seed if msg.HasField("seed") else None,
        presence_penalty=msg.presence_penalty if msg.HasField("presence_penalty") else None,
        frequency_penalty=msg.frequency_penalty if msg.HasField("frequency_penalty") else None,
    )
    if sampling.max_tokens is not None and not 1 <= sampling.max_tokens <= MAX_TOKENS_LIMIT:
        bad("max_tokens", f"must be between 1 and {MAX_TOKENS_LIMIT}")
    _in_range(sampling.temperature, "temperature", 0.0, 2.0, bad)
    _in_range(sampling.top_p, "top_p", 0.0, 1.0, bad)
    _in_range(sampling.presence_penalty, "presence_penalty", -2.0, 2.0, bad)
    _in_range(sampling.frequency_penalty, "frequency_penalty", -2.0, 2.0, bad)
    for i, stop in enumerate(sampling.stop):
        if not stop:
            bad(f"stop[{i}]", "must not be empty")
        elif len(stop) > MAX_STOP_CHARS:
            bad(f"stop[{i}]", f"at most {MAX_STOP_CHARS} characters")

    tools = tuple(_tool(t, f"tools[{i}]", bad) for i, t in enumerate(msg.tools))
    names = [t.name for t in tools]
    for i, name in enumerate(names):
        if name in names[:i]:
            bad(f"tools[{i}].name", f"duplicate tool name {name!r}")
    choice = msg.tool_choice
    if choice and choice not in TOOL_CHOICES and choice not in names:
        bad("tool_choice", "must be auto, none, required or the name of a tool in tools")
    if choice in ("required",) and not tools:
        bad("tool_choice", "required needs at least one tool")

    prompt_chars = sum(
        len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages
    ) + sum(len(t.description) + _json_chars(t.parameters) for t in tools)
    if prompt_chars > MAX_PROMPT_CHARS:
        bad("messages", f"{prompt_chars} prompt characters; at most {MAX_PROMPT_CHARS}")

    ttl = msg.cache.ttl_seconds if msg.cache.HasField("ttl_seconds") else None
    if ttl is not None and ttl > MAX_CACHE_TTL_S:
        bad("cache.ttl_seconds", f"at most {MAX_CACHE_TTL_S} (30 days)")
    for key, value in msg.metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            bad(f"metadata[{key[:MAX_METADATA_KEY_CHARS]!r}]", "keys are 1-128 characters")
        elif len(value) > MAX_METADATA_VALUE_CHARS:
            bad(f"metadata[{key!r}]", f"at most {MAX_METADATA_VALUE_CHARS} characters")

    if problems:
        raise InvalidRequest(problems)
    return CompletionRequest(
        model=msg.model,
        messages=messages,
        sampling=sampling,
        tools=tools,
        tool_choice=choice,
        cache=CacheControl(
            no_cache=msg.cache.no_cache,
            no_store=msg.cache.no_store,
            ttl_seconds=ttl,
        ),
        metadata=dict(msg.metadata),
        caller=caller,
    )


_Bad = Callable[[str, str], None]


def _in_range(value: float | None, field: str, low: float, high: float, bad: _Bad) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        bad(field, f"must be between {low:g} and {high:g}")


def _counts(msg: pb.CompleteRequest, bad: _Bad) -> None:
    """Repeated fields over their limits; `len` of a parsed field builds no Python objects."""
    for field, count, limit in (
        ("messages", len(msg.messages), MAX_MESSAGES),
        ("stop", len(msg.stop), MAX_STOP_SEQUENCES),
        ("tools", len(msg.tools), MAX_TOOLS),
        ("metadata", len(msg.metadata), MAX_METADATA),
    ):
        if count > limit:
            bad(field, f"{count} entries; at most {limit}")
    for i, m in enumerate(msg.messages):
        if len(m.tool_calls) > MAX_TOOL_CALLS:
            bad(f"messages[{i}].tool_calls", f"at most {MAX_TOOL_CALLS} tool calls")


def _message(m: pb.Message, path: str, bad: _Bad) -> Message:
    known = _ROLES.get(m.role)
    if known is None:
        bad(f"{path}.role", "must be ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL")
    role = known or Role.USER
    if role is Role.TOOL and not m.tool_call_id:
        bad(f"{path}.tool_call_id", "a tool message must say which call it answers")
    if len(m.tool_call_id) > MAX_NAME_CHARS:
        bad(f"{path}.tool_call_id", f"at most {MAX_NAME_CHARS} characters")
    if len(m.name) > MAX_NAME_CHARS:
        bad(f"{path}.name", f"at most {MAX_NAME_CHARS} characters")
    if m.tool_calls and role is not Role.ASSISTANT:
        bad(f"{path}.tool_calls", "only assistant messages carry tool calls")
    # Some providers refuse empty text blocks; an assistant turn may be only calls.
    if known is Role.USER and not m.content:
        bad(f"{path}.content", "a user message must not be empty")
    if role is Role.ASSISTANT and not m.content and not m.tool_calls:
        bad(f"{path}.content", "an assistant message needs content or tool calls")
    calls = []
    for j, call in enumerate(m.tool_calls):
        where = f"{path}.tool_calls[{j}]"
        if not TOOL_NAME.match(call.name):
            bad(f"{where}.name", "must be 1-64 letters, digits, _ or -")
        if len(call.id) > MAX_NAME_CHARS:
            bad(f"{where}.id", f"at most {MAX_NAME_CHARS} characters")
        if call.arguments and not isinstance(_json(call.arguments), dict):
            bad(f"{where}.arguments", "must be a JSON object")
        calls.append(ToolCall(id=call.id, name=call.name, arguments=call.arguments))
    return Message(
        role=role,
        content=m.content,
        name=m.name,
        tool_calls=tuple(calls),
        tool_call_id=m.tool_call_id,
    )


def _turns(messages: Sequence[Message], bad: _Bad) -> None:
    """The order providers insist on: each tool call answered, right after it, exactly once.

    OpenAI and Anthropic both refuse a tool message that answers no pending
    call and an assistant's tool calls left unanswered by the next turn.
    """
    pending: dict[str, str] = {}  # call id -> the path of the call
    seen: set[str] = set()

    def unanswered() -> None:
        for where in pending.values():
            bad(where, "no tool message right after this call answers it")
        pending.clear()

    for i, m in enumerate(messages):
        path = f"messages[{i}]"
        if m.role is Role.TOOL:
            if m.tool_call_id in pending:
                del pending[m.tool_call_id]
            elif m.tool_call_id:
                bad(
                    f"{path}.tool_call_id",
                    "must answer an unanswered tool call of the assistant message before it",
                )
            continue
        unanswered()
        for j, call in enumerate(m.tool_calls if m.role is Role.ASSISTANT else ()):
            where = f"{path}.tool_calls[{j}].id"
            if not call.id:
                bad(where, "must not be empty")
            elif call.id in seen:
                bad(where, f"duplicate tool call id {call.id[:MAX_NAME_CHARS]!r}")
            else:
                seen.add(call.id)
                pending[call.id] = where
    unanswered()
    if messages and all(m.role is Role.SYSTEM for m in messages):
        bad("messages", "must contain a message other than system messages")


def _tool(t: pb.Tool, path: str, bad: _Bad) -> Tool:
    if not TOOL_NAME.match(t.name):
        bad(f"{path}.name", "must be 1-64 letters, digits, _ or -")
    parameters: dict[str, Any] = {}
    if t.HasField("parameters"):
        try:
            parameters = json_format.MessageToDict(t.parameters)
        except ValueError:  # NaN and infinities have no JSON spelling
            bad(f"{path}.parameters", "numbers must be finite")
        else:
            _schema(parameters, f"{path}.parameters", bad)
    return Tool(name=t.name, description=t.description, parameters=parameters)


def _schema(schema: Mapping[str, Any], path: str, bad: _Bad) -> None:
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


def _json(text: str) -> object:
    """The parsed value, or None when `text` is not JSON (or is nested past the parser)."""
    try:
        parsed: object = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed


def _json_chars(value: Mapping[str, Any]) -> int:
    return len(json.dumps(value, separators=(",", ":"))) if value else 0


def _usage(usage: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        cached_input_tokens=usage.cached_input_tokens,
    )


def _attempts(attempts: Sequence[Attempt]) -> list[pb.Attempt]:
    out = []
    for a in attempts:
        item = pb.Attempt(
            deployment=a.deployment,
            model_group=a.model_group,
            outcome=_OUTCOMES[a.outcome],
            error=a.error,
        )
        item.latency.FromNanoseconds(round(a.latency_s * 1e9))
        out.append(item)
    return out


def _route_fields(route: RouteFacts) -> dict[str, object]:
    return {
        "deployment": route.deployment,
        "model_group": route.model_group,
        "cost_usd": route.cost_usd,
        "cache_hit": route.cache_hit,
        "attempts": _attempts(route.attempts),
        "fallback_depth": route.fallback_depth,
        "routing": _routing(route),
    }


def _routing(route: RouteFacts) -> pb.RoutingDecision:
    decision = pb.RoutingDecision(
        strategy=route.strategy, explored=route.explored, candidates=route.candidates
    )
    decision.queue_wait.FromNanoseconds(round(route.queued_s * 1e9))
    return decision


_STATE = {
    HealthState.HEALTHY: pb.DEPLOYMENT_STATE_HEALTHY,
    HealthState.COOLING_DOWN: pb.DEPLOYMENT_STATE_COOLING_DOWN,
    HealthState.RAMPING: pb.DEPLOYMENT_STATE_RAMPING,
}


def deployment_status(status: DeploymentStatus, wall_offset_s: float) -> pb.Deployment:
    """`wall_offset_s` turns the gateway's monotonic times into wall-clock ones."""
    d = status.deployment
    message = pb.Deployment(
        id=d.id,
        model=d.model,
        provider=d.provider,
        rpm_limit=d.rpm,
        tpm_limit=d.tpm,
        state=_STATE[status.health.state],
        requests_remaining=status.requests_remaining,
        tokens_remaining=status.tokens_remaining,
        in_flight=status.in_flight,
        traffic_share=status.health.share,
    )
    if status.health.until is not None:
        message.cooldown_until.FromNanoseconds(round((status.health.until + wall_offset_s) * 1e9))
    return message


def complete_response(completion: Completion) -> pb.CompleteResponse:
    response = completion.response
    message = response.message
    return pb.CompleteResponse(
        id=response.id,
        model=response.model,
        message=pb.Message(
            role=pb.ROLE_ASSISTANT,
            content=message.content,
            tool_calls=[
                pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls
            ],
        ),
        finish_reason=_FINISH[response.finish_reason],
        usage=_usage(response.usage),
        **_route_fields(completion.route),  # type: ignore[arg-type]
    )


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
        usage=_usage(final.usage),
        **_route_fields(final.route),  # type: ignore[arg-type]
    )
    event.time_to_first_chunk.FromNanoseconds(round(final.time_to_first_chunk_s * 1e9))
    return pb.StreamCompleteResponse(final=event)
