"""From the caller's Python values to the wire, and from the wire back.

Callers pass OpenAI-style dicts as often as typed values, so both are read
here, strictly: an unknown parameter is a TypeError and a malformed message
a ValueError, raised before anything is sent, rather than a field silently
dropped on the way to the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypedDict

from google.protobuf import duration_pb2, timestamp_pb2

from ._pb import gateway_pb2 as pb
from ._types import (
    Attempt,
    BudgetStatus,
    Cache,
    CacheHit,
    CacheStats,
    CallStats,
    Completion,
    Deployment,
    Message,
    ModelGroup,
    ModelList,
    Routing,
    Spender,
    Stats,
    StreamFinal,
    Tool,
    ToolCall,
    Usage,
)

MessageLike = Message | Mapping[str, Any]
ToolLike = Tool | Mapping[str, Any]


class CompleteParams(TypedDict, total=False):
    """The keyword parameters of `complete` and `stream`; None means "not set".

    `timeout` (seconds) bounds the whole call, retries and their waits
    included, and replaces the client's default; `retries` replaces the
    client's number of retries for this call.
    """

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: str | Sequence[str] | None
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    tools: Sequence[ToolLike] | None
    tool_choice: str | Mapping[str, Any] | None
    metadata: Mapping[str, str] | None
    cache: Cache | Mapping[str, Any] | None
    response_format: Mapping[str, Any] | None
    validate_json: bool | None
    user: str | None
    parallel_tool_calls: bool | None
    reasoning_effort: str | None
    logit_bias: Mapping[int, float] | None
    logprobs: bool | None
    top_logprobs: int | None
    extra_params: Mapping[str, Any] | None
    n: int | None
    timeout: float | None
    retries: int | None


_REQUEST_PARAMS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "metadata",
        "cache",
        "response_format",
        "validate_json",
        "user",
        "parallel_tool_calls",
        "reasoning_effort",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "extra_params",
        "n",
    }
)
_CALL_PARAMS = frozenset({"timeout", "retries"})
_ROLES = {
    "system": pb.ROLE_SYSTEM,
    "developer": pb.ROLE_SYSTEM,
    "user": pb.ROLE_USER,
    "assistant": pb.ROLE_ASSISTANT,
    "tool": pb.ROLE_TOOL,
}
_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
_CACHE_KEYS = frozenset(f.name for f in fields(Cache))


def check_params(method: str, params: Mapping[str, object]) -> None:
    unknown = sorted(set(params) - _REQUEST_PARAMS - _CALL_PARAMS)
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    if method == "stream" and params.get("n") not in (None, 1):
        raise TypeError("stream() streams one answer: n must be 1 (use complete() for more)")


def build_request(
    model: str, messages: Iterable[MessageLike], params: Mapping[str, Any]
) -> pb.CompleteRequest:
    """The CompleteRequest for `model`, `messages` and the request's own `params`."""
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a non-empty string: a model group or an alias")
    if isinstance(messages, str | bytes | Mapping | Message):
        raise TypeError("messages must be a sequence of messages, not one message")
    request = pb.CompleteRequest(model=model)
    request.messages.extend(_message(m, i) for i, m in enumerate(messages))
    p = {k: v for k, v in params.items() if k in _REQUEST_PARAMS and v is not None}
    if "max_tokens" in p:
        request.max_tokens = _int("max_tokens", p["max_tokens"])
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if name in p:
            setattr(request, name, _float(name, p[name]))
    if "seed" in p:
        request.seed = _int("seed", p["seed"])
    if "stop" in p:
        stop = p["stop"]
        request.stop.extend([stop] if isinstance(stop, str) else _strings("stop", stop))
    if "tools" in p:
        request.tools.extend(_tool(t, i) for i, t in enumerate(p["tools"]))
    if "tool_choice" in p:
        request.tool_choice = _tool_choice(p["tool_choice"])
    if "metadata" in p:
        request.metadata.update(_str_map("metadata", p["metadata"]))
    if "cache" in p:
        request.cache.CopyFrom(_cache(p["cache"]))
    if "response_format" in p:
        request.response_format.CopyFrom(_response_format(p["response_format"]))
    for name in ("validate_json", "parallel_tool_calls", "logprobs"):
        if name in p:
            if not isinstance(p[name], bool):
                raise TypeError(f"{name}: expected a bool")
            setattr(request, name, p[name])
    for name in ("user", "reasoning_effort"):
        if name in p:
            if not isinstance(p[name], str):
                raise TypeError(f"{name}: expected a string")
            setattr(request, name, p[name])
    if "top_logprobs" in p:
        request.top_logprobs = _int("top_logprobs", p["top_logprobs"])
    if "n" in p:
        request.n = _int("n", p["n"])
    if "logit_bias" in p:
        bias = p["logit_bias"]
        if not isinstance(bias, Mapping):
            raise TypeError("logit_bias: expected a mapping of token id to bias")
        for token, value in bias.items():
            request.logit_bias[_int("logit_bias", token)] = _float("logit_bias", value)
    if "extra_params" in p:
        if not isinstance(p["extra_params"], Mapping):
            raise TypeError("extra_params: expected a mapping")
        request.extra_params.update(dict(p["extra_params"]))
    return request


_FORMAT_TYPES = {
    "text": pb.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    "json_schema": pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}


def _response_format(value: object) -> pb.ResponseFormat:
    """OpenAI's shape: {"type": "json_object"}, or {"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}, "strict": ...}}."""
    if not isinstance(value, Mapping) or value.get("type") not in _FORMAT_TYPES:
        raise TypeError(
            "response_format: expected {'type': 'text' | 'json_object' | 'json_schema', ...}"
        )
    out = pb.ResponseFormat(type=_FORMAT_TYPES[value["type"]])
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise TypeError("response_format: json_schema needs {'name': ..., 'schema': {...}}")
        out.name = str(spec.get("name", ""))
        out.schema.update(dict(spec["schema"]))
        out.strict = bool(spec.get("strict", False))
    return out


def _message(message: MessageLike, index: int) -> pb.Message:
    where = f"messages[{index}]"
    role: object
    name: object
    call_id: object
    if isinstance(message, Message):
        role, content, name = message.role, message.content, message.name
        calls: Sequence[object] = message.tool_calls
        call_id = message.tool_call_id
    elif isinstance(message, Mapping):
        extra = [k for k, v in message.items() if k not in _MESSAGE_KEYS and v is not None]
        if extra:
            raise ValueError(f"{where}: unsupported field {extra[0]!r}")
        role = message.get("role")
        content = _content(where, message.get("content"))
        name = message.get("name") or ""
        calls = message.get("tool_calls") or ()
        call_id = message.get("tool_call_id") or ""
    else:
        raise TypeError(f"{where}: expected a Message or a dict, got {type(message).__name__}")
    if role not in _ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(_ROLES)}, got {role!r}")
    return pb.Message(
        role=_ROLES[role],
        content=content,
        name=_str(f"{where}.name", name),
        tool_calls=[_tool_call(f"{where}.tool_calls[{i}]", c) for i, c in enumerate(calls)],
        tool_call_id=_str(f"{where}.tool_call_id", call_id),
    )


def _content(where: str, content: object) -> str:
    """Text, or OpenAI's list of parts when every part is text (the API carries text only)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                raise ValueError(f"{where}.content: only text parts are supported")
            texts.append(_str(f"{where}.content", part.get("text")))
        return "".join(texts)
    raise TypeError(f"{where}.content: expected text, got {type(content).__name__}")


def _tool_call(where: str, call: object) -> pb.ToolCall:
    if isinstance(call, ToolCall):
        return pb.ToolCall(id=call.id, name=call.name, arguments=call.arguments)
    if not isinstance(call, Mapping):
        raise TypeError(f"{where}: expected a ToolCall or a dict")
    function = call.get("function")
    fn: Mapping[str, Any] = function if isinstance(function, Mapping) else call
    arguments = fn.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return pb.ToolCall(
        id=_str(f"{where}.id", call.get("id", "")),
        name=_str(f"{where}.name", fn.get("name")),
        arguments=arguments,
    )


def _tool(tool: ToolLike, index: int) -> pb.Tool:
    where = f"tools[{index}]"
    name: object
    description: object
    parameters: object
    if isinstance(tool, Tool):
        name, description, parameters = tool.name, tool.description, tool.parameters
    elif isinstance(tool, Mapping):
        function = tool.get("function")
        fn: Mapping[str, Any] = function if isinstance(function, Mapping) else tool
        name, description = fn.get("name"), fn.get("description", "")
        parameters = fn.get("parameters")
    else:
        raise TypeError(f"{where}: expected a Tool or a dict")
    out = pb.Tool(
        name=_str(f"{where}.name", name),
        description=_str(f"{where}.description", description or ""),
    )
    if parameters is not None:
        if not isinstance(parameters, Mapping):
            raise TypeError(f"{where}.parameters: expected a JSON Schema object")
        out.parameters.update(parameters)
    return out


def _tool_choice(choice: object) -> str:
    """`auto`, `none`, `required` or a tool's name; OpenAI's `{"function": {"name"}}` too."""
    if isinstance(choice, str):
        return choice
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
    raise TypeError("tool_choice: expected a string or {'function': {'name': ...}}")


def _cache(cache: object) -> pb.CacheControl:
    if isinstance(cache, Mapping):
        unknown = set(cache) - _CACHE_KEYS
        if unknown:
            raise ValueError(f"cache: unsupported field {sorted(unknown)[0]!r}")
        cache = Cache(**{k: v for k, v in cache.items() if v is not None})
    if not isinstance(cache, Cache):
        raise TypeError("cache: expected a Cache or a dict")
    out = pb.CacheControl(
        no_cache=bool(cache.no_cache),
        no_store=bool(cache.no_store),
        namespace=_str("cache.namespace", cache.namespace),
        tags=_tags("cache.tags", cache.tags),
    )
    if cache.ttl_seconds is not None:
        out.ttl_seconds = _int("cache.ttl_seconds", cache.ttl_seconds)
    if cache.semantic is not None:
        out.semantic = _bool("cache.semantic", cache.semantic)
    if cache.min_similarity is not None:
        out.min_similarity = _float("cache.min_similarity", cache.min_similarity)
    return out


def invalidate_request(namespace: object, tags: object) -> pb.InvalidateCacheRequest:
    """The InvalidateCacheRequest for `namespace` and `tags`, at least one of them given."""
    request = pb.InvalidateCacheRequest(
        namespace=_str("namespace", namespace), tags=_tags("tags", tags)
    )
    if not request.namespace and not request.tags:
        # The gateway has no "drop everything" and would refuse it: refused before any call.
        raise ValueError("invalidate_cache: name the tags to invalidate, or a namespace to drop")
    return request


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return value


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


def _str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _strings(name: str, values: object) -> list[str]:
    if not isinstance(values, Iterable):
        raise TypeError(f"{name}: expected a string or a sequence of strings")
    return [_str(name, v) for v in values]


def _tags(name: str, values: object) -> list[str]:
    """Strings; a lone string is refused, since iterating it would make a tag per character."""
    if isinstance(values, str | bytes):
        raise TypeError(f"{name}: expected a sequence of strings, not one string")
    return _strings(name, values)


def _str_map(name: str, values: object) -> dict[str, str]:
    if not isinstance(values, Mapping):
        raise TypeError(f"{name}: expected a mapping of strings to strings")
    return {_str(name, k): _str(f"{name}[{k!r}]", v) for k, v in values.items()}


# The answers.


def _enum_name(value: int, names: Mapping[int, str], prefix: str) -> str:
    """`FINISH_REASON_TOOL_CALLS` -> `tool_calls`; a value unknown here -> its number."""
    name = names.get(value)
    return name.removeprefix(prefix).lower() if name is not None else str(value)


_FINISH = {v.number: v.name for v in pb.FinishReason.DESCRIPTOR.values}
_OUTCOME = {v.number: v.name for v in pb.AttemptOutcome.DESCRIPTOR.values}
_STATE = {v.number: v.name for v in pb.DeploymentState.DESCRIPTOR.values}
_ROLE_NAMES = {v.number: v.name for v in pb.Role.DESCRIPTOR.values}
_CACHE_KIND = {v.number: v.name for v in pb.CacheKind.DESCRIPTOR.values}


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.ToNanoseconds() / 1e9


def _datetime(timestamp: timestamp_pb2.Timestamp) -> datetime:
    return timestamp.ToDatetime(UTC)


def _cache_hit(message: pb.CompleteResponse | pb.Final) -> CacheHit | None:
    if not message.HasField("cache"):
        return None
    hit = message.cache
    return CacheHit(
        kind=_enum_name(hit.kind, _CACHE_KIND, "CACHE_KIND_"),
        similarity=hit.similarity,
        cost_saved_usd=hit.cost_saved_usd,
        created=_datetime(hit.created) if hit.HasField("created") else None,
    )


def _usage(usage: pb.Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        cached_input_tokens=usage.cached_input_tokens,
    )


def _attempts(attempts: Iterable[pb.Attempt]) -> tuple[Attempt, ...]:
    return tuple(
        Attempt(
            deployment=a.deployment,
            model_group=a.model_group,
            outcome=_enum_name(a.outcome, _OUTCOME, "ATTEMPT_OUTCOME_"),
            latency=_seconds(a.latency),
            error=a.error,
        )
        for a in attempts
    )


def _routing(routing: pb.RoutingDecision) -> Routing:
    return Routing(
        strategy=routing.strategy,
        explored=routing.explored,
        queue_wait=_seconds(routing.queue_wait),
        candidates=tuple(routing.candidates),
    )


def completion(response: pb.CompleteResponse) -> Completion:
    m = response.message
    return Completion(
        id=response.id,
        model=response.model,
        deployment=response.deployment,
        model_group=response.model_group,
        message=Message(
            role=_enum_name(m.role, _ROLE_NAMES, "ROLE_") if m.role else "assistant",
            content=m.content,
            name=m.name,
            tool_calls=tuple(ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls),
            tool_call_id=m.tool_call_id,
        ),
        finish_reason=_enum_name(response.finish_reason, _FINISH, "FINISH_REASON_"),
        usage=_usage(response.usage),
        cost_usd=response.cost_usd,
        cache_hit=response.cache_hit,
        attempts=_attempts(response.attempts),
        fallback_depth=response.fallback_depth,
        routing=_routing(response.routing),
        cache=_cache_hit(response),
    )


def stream_final(final: pb.Final) -> StreamFinal:
    return StreamFinal(
        id=final.id,
        model=final.model,
        deployment=final.deployment,
        model_group=final.model_group,
        finish_reason=_enum_name(final.finish_reason, _FINISH, "FINISH_REASON_"),
        usage=_usage(final.usage),
        cost_usd=final.cost_usd,
        cache_hit=final.cache_hit,
        attempts=_attempts(final.attempts),
        fallback_depth=final.fallback_depth,
        time_to_first_chunk=_seconds(final.time_to_first_chunk),
        routing=_routing(final.routing),
        cache=_cache_hit(final),
    )


def model_list(response: pb.ListModelsResponse) -> ModelList:
    def deployment(d: pb.Deployment) -> Deployment:
        until = d.cooldown_until if d.HasField("cooldown_until") else None
        return Deployment(
            id=d.id,
            model=d.model,
            provider=d.provider,
            state=_enum_name(d.state, _STATE, "DEPLOYMENT_STATE_"),
            rpm_limit=d.rpm_limit if d.HasField("rpm_limit") else None,
            tpm_limit=d.tpm_limit if d.HasField("tpm_limit") else None,
            requests_remaining=(d.requests_remaining if d.HasField("requests_remaining") else None),
            tokens_remaining=d.tokens_remaining if d.HasField("tokens_remaining") else None,
            in_flight=d.in_flight,
            traffic_share=d.traffic_share,
            cooldown_until=_datetime(until) if until is not None else None,
        )

    return ModelList(
        groups=tuple(
            ModelGroup(
                name=g.name,
                deployments=tuple(deployment(d) for d in g.deployments),
                fallbacks=tuple(g.fallbacks),
            )
            for g in response.groups
        ),
        aliases={a.name: a.target for a in response.aliases},
        caches=tuple(
            CacheStats(
                name=c.name,
                backend=c.backend,
                entries=c.entries,
                bytes=c.bytes if c.HasField("bytes") else None,
            )
            for c in response.caches
        ),
    )


class ToolCallBuilder:
    """A streamed tool call's fragments, joined by their index."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}

    def add(self, fragments: Iterable[pb.ToolCallDelta]) -> None:
        for f in fragments:
            call = self._calls.setdefault(f.index, ["", "", ""])
            call[0] = call[0] or f.id
            call[1] = call[1] or f.name
            call[2] += f.arguments

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(*self._calls[i]) for i in sorted(self._calls))


_PERIOD = {v.number: v.name for v in pb.StatsPeriod.DESCRIPTOR.values}
PERIODS = ("hour", "day", "month", "total")


def stats_request(period: str) -> pb.GetStatsRequest:
    """`hour`, `day`, `month` or `total`; anything else is refused here, before a call."""
    if period not in PERIODS:
        raise ValueError(f"period: expected one of {', '.join(PERIODS)}, not {period!r}")
    return pb.GetStatsRequest(period=pb.StatsPeriod.Value(f"STATS_PERIOD_{period.upper()}"))


def stats(response: pb.GetStatsResponse) -> Stats:
    def calls(c: pb.CallStats) -> CallStats:
        return CallStats(
            requests=c.requests,
            errors=dict(c.errors),
            latency_p50=_seconds(c.latency_p50) if c.HasField("latency_p50") else None,
            latency_p95=_seconds(c.latency_p95) if c.HasField("latency_p95") else None,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            spend_usd=c.spend_usd,
            saved_usd=c.saved_usd,
            cache_hits=c.cache_hits,
            cache_hit_rate=c.cache_hit_rate,
        )

    def spender(s: pb.SpenderStats) -> Spender:
        budget = None
        if s.HasField("budget"):
            b = s.budget
            budget = BudgetStatus(
                max_usd=b.max_budget_usd,
                spend_usd=b.spend_usd,
                remaining_usd=b.remaining_usd,
                duration=b.duration,
                resets_at=_datetime(b.resets_at) if b.HasField("resets_at") else None,
            )
        return Spender(calls=calls(s.calls), budget=budget)

    return Stats(
        period=_enum_name(response.period, _PERIOD, "STATS_PERIOD_"),
        period_start=_datetime(response.period_start)
        if response.HasField("period_start")
        else None,
        shared=response.shared,
        groups={g.name: calls(g.calls) for g in response.groups},
        deployments={d.id: calls(d.calls) for d in response.deployments},
        keys={k.name: spender(k) for k in response.keys},
        teams={t.name: spender(t) for t in response.teams},
        providers={p.name: p.spend_usd for p in response.providers},
    )
