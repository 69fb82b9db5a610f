"""Protobuf <-> domain types, with validation of what callers send.

The only module (with the servicer) that touches generated protobuf code.
A request is checked whole before anything is called, and every problem is
reported at once as a field violation naming the field's path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from google.protobuf import json_format

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.domain import (
    Attempt,
    CacheControl,
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
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

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


def request_from_proto(msg: pb.CompleteRequest) -> CompletionRequest:
    """A validated domain request, or InvalidRequest listing every violation."""
    problems: list[FieldViolation] = []

    def bad(field: str, description: str) -> None:
        problems.append(FieldViolation(field, description))

    if not msg.model.strip():
        bad("model", "must name a model group or alias")
    if not msg.messages:
        bad("messages", "must contain at least one message")
    messages = tuple(_message(m, f"messages[{i}]", bad) for i, m in enumerate(msg.messages))

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
    if len(sampling.stop) > MAX_STOP_SEQUENCES:
        bad("stop", f"at most {MAX_STOP_SEQUENCES} stop sequences")
    for i, stop in enumerate(sampling.stop):
        if not stop:
            bad(f"stop[{i}]", "must not be empty")

    tools = tuple(_tool(t, f"tools[{i}]", bad) for i, t in enumerate(msg.tools))
    names = [t.name for t in tools]
    for i, name in enumerate(names):
        if name in names[:i]:
            bad(f"tools[{i}].name", f"duplicate tool name {name!r}")
    choice = msg.tool_choice
    if choice and choice not in ("auto", "none", "required") and choice not in names:
        bad("tool_choice", "must be auto, none, required or the name of a tool in tools")
    if choice in ("required",) and not tools:
        bad("tool_choice", "required needs at least one tool")

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
            ttl_seconds=msg.cache.ttl_seconds if msg.cache.HasField("ttl_seconds") else None,
        ),
        metadata=dict(msg.metadata),
    )


_Bad = Callable[[str, str], None]


def _in_range(value: float | None, field: str, low: float, high: float, bad: _Bad) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        bad(field, f"must be between {low:g} and {high:g}")


def _message(m: pb.Message, path: str, bad: _Bad) -> Message:
    role = _ROLES.get(m.role)
    if role is None:
        bad(f"{path}.role", "must be ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL")
        role = Role.USER
    if role is Role.TOOL and not m.tool_call_id:
        bad(f"{path}.tool_call_id", "a tool message must say which call it answers")
    if m.tool_calls and role is not Role.ASSISTANT:
        bad(f"{path}.tool_calls", "only assistant messages carry tool calls")
    calls = []
    for j, call in enumerate(m.tool_calls):
        if not TOOL_NAME.match(call.name):
            bad(f"{path}.tool_calls[{j}].name", "must be 1-64 letters, digits, _ or -")
        calls.append(ToolCall(id=call.id, name=call.name, arguments=call.arguments))
    return Message(
        role=role,
        content=m.content,
        name=m.name,
        tool_calls=tuple(calls),
        tool_call_id=m.tool_call_id,
    )


def _tool(t: pb.Tool, path: str, bad: _Bad) -> Tool:
    if not TOOL_NAME.match(t.name):
        bad(f"{path}.name", "must be 1-64 letters, digits, _ or -")
    parameters = json_format.MessageToDict(t.parameters) if t.HasField("parameters") else {}
    return Tool(name=t.name, description=t.description, parameters=parameters)


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
    decision = pb.RoutingDecision(strategy=route.strategy, explored=route.explored)
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
