"""OpenAI's chat completions wire format, for both provider adapters.

Both adapters build their request here: litellm takes these fields as
keyword arguments and forwards them to OpenAI-compatible upstreams unchanged,
and the pooled-HTTP fast path posts them itself. Both read answers, chunks
and usage with the parsers here, and both map an HTTP status to an error
with the one table here. One module means the two paths cannot drift apart
in what they send, what they understand or how they fail (unit tests compare
them on the wire). No litellm import here: the fast path must not pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    ProviderChunk,
    ProviderResponse,
    Role,
    Sampling,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from switchboard.errors import (
    ContentPolicyViolation,
    ContextWindowExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamInternal,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.providers.retry_after import parse_rate_limit, parse_retry_after


def request_fields(request: CompletionRequest) -> dict[str, Any]:
    """`messages`, the sampling fields the caller set, `tools` and `tool_choice`."""
    fields: dict[str, Any] = {"messages": [message_dict(m) for m in request.messages]}
    fields.update(sampling_fields(request.sampling))
    if request.tools:
        fields["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters) or {"type": "object", "properties": {}},
                },
            }
            for t in request.tools
        ]
        if request.tool_choice:
            fields["tool_choice"] = tool_choice(request.tool_choice)
    return fields


def sampling_fields(sampling: Sampling) -> dict[str, Any]:
    """Only what the caller set: an absent field keeps the provider's default."""
    optional = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }
    fields: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    return fields


def tool_choice(choice: str) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def message_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


# --- answers -------------------------------------------------------------------
#
# The parsers below read OpenAI's response and chunk shapes from either the
# JSON the fast path decodes (dicts) or the response objects litellm returns
# (attributes), through `_get`: one parser serves both adapters without
# converting litellm's objects to dicts on every chunk.


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def parse_response(data: Any, headers: Mapping[str, str] | None) -> ProviderResponse:
    """A `chat.completion` (and its rate-limit headers) as a domain response."""
    choice = _get(data, "choices")[0]
    message = _get(choice, "message") or {}
    tool_calls = tuple(
        ToolCall(
            id=_get(c, "id") or "",
            name=_get(_get(c, "function") or {}, "name") or "",
            arguments=_arguments(_get(_get(c, "function") or {}, "arguments")),
        )
        for c in _get(message, "tool_calls") or ()
    )
    return ProviderResponse(
        id=_get(data, "id") or "",
        model=_get(data, "model") or "",
        message=Message(
            role=Role.ASSISTANT, content=_get(message, "content") or "", tool_calls=tool_calls
        ),
        finish_reason=FinishReason.from_provider(_get(choice, "finish_reason")),
        usage=parse_usage(_get(data, "usage")) or Usage(),
        rate_limit=parse_rate_limit(headers) if headers else None,
    )


def parse_chunk(data: Any) -> ProviderChunk | None:
    """A `chat.completion.chunk` as a domain chunk; None when it carries nothing."""
    usage = parse_usage(_get(data, "usage"))
    choices = _get(data, "choices") or ()
    content = ""
    deltas: tuple[ToolCallDelta, ...] = ()
    finish: FinishReason | None = None
    if choices:
        choice = choices[0]
        delta = _get(choice, "delta") or {}
        content = _get(delta, "content") or ""
        deltas = tuple(
            ToolCallDelta(
                index=int(_get(c, "index") or 0),
                id=_get(c, "id") or "",
                name=_get(_get(c, "function") or {}, "name") or "",
                arguments=_get(_get(c, "function") or {}, "arguments") or "",
            )
            for c in _get(delta, "tool_calls") or ()
        )
        reason = _get(choice, "finish_reason")
        if reason:
            finish = FinishReason.from_provider(reason)
    if not content and not deltas and finish is None and usage is None:
        return None
    return ProviderChunk(
        content=content,
        tool_calls=deltas,
        id=_get(data, "id") or "",
        model=_get(data, "model") or "",
        finish_reason=finish,
        usage=usage,
    )


def merge_chunks(first: ProviderChunk, then: ProviderChunk) -> ProviderChunk | None:
    """One chunk for two that arrived together, or None when they must stay apart.

    Text joins; tool-call fragments and anything after usage stay separate,
    and a finished chunk takes no more text. Merging is what keeps a stream's
    cost per call flat when the loop falls behind: events that are already
    buffered leave in one gRPC message instead of one each.
    """
    if first.tool_calls or then.tool_calls or first.usage is not None:
        return None
    if first.finish_reason is not None and (then.content or then.finish_reason is not None):
        return None
    return ProviderChunk(
        content=first.content + then.content,
        id=first.id or then.id,
        model=first.model or then.model,
        finish_reason=first.finish_reason or then.finish_reason,
        usage=then.usage,
        pieces=(first.pieces if first.content else 0) + (then.pieces if then.content else 0),
    )


def parse_usage(raw: Any) -> Usage | None:
    if raw is None or isinstance(raw, str | bytes | int | float | list):
        return None
    details = _get(raw, "prompt_tokens_details")
    cached = _get(details, "cached_tokens") if details is not None else None
    return Usage(
        input_tokens=int(_get(raw, "prompt_tokens") or 0),
        output_tokens=int(_get(raw, "completion_tokens") or 0),
        cached_input_tokens=int(cached or 0),
    )


def _arguments(value: Any) -> str:
    """OpenAI sends a JSON string; some compatible servers send the object itself."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


# --- failures ------------------------------------------------------------------

# The provider's own wording of a too-long prompt, as litellm recognises it
# when a server (vLLM, llama.cpp) sends no `context_length_exceeded` code.
_CONTEXT_WINDOW_WORDING = (
    "this model's maximum context length is",
    "maximum context length",
    "exceeds the available context size",
    "is longer than the model's context length",
)


def status_error(
    status: int,
    message: str,
    code: str | None,
    headers: Mapping[str, str],
    deployment_id: str,
    wall_clock: Callable[[], float],
) -> ProviderError:
    """The one HTTP status -> error table, for both adapters.

    body code content_policy_violation      ContentPolicyViolation
    body code context_length_exceeded       ContextWindowExceeded
      (or a 400 in the wording above)
    429                                     UpstreamRateLimited (retry_after from headers)
    401, 403                                UpstreamAuthError
    404                                     UpstreamNotFound
    400, 413, 422                           UpstreamBadRequest
    408, 504                                UpstreamTimeout
    other 5xx                               UpstreamUnavailable
    anything else                           UpstreamInternal
    """
    message = message or f"HTTP {status}"
    if code == "content_policy_violation":
        return ContentPolicyViolation(message, deployment=deployment_id)
    if code == "context_length_exceeded" or (
        status == 400 and any(w in message.lower() for w in _CONTEXT_WINDOW_WORDING)
    ):
        return ContextWindowExceeded(message, deployment=deployment_id)
    if status == 429:
        return UpstreamRateLimited(
            message, deployment=deployment_id, retry_after=parse_retry_after(headers, wall_clock)
        )
    if status in (401, 403):
        return UpstreamAuthError(message, deployment=deployment_id)
    if status == 404:
        return UpstreamNotFound(message, deployment=deployment_id)
    if status in (400, 413, 422):
        return UpstreamBadRequest(message, deployment=deployment_id)
    if status in (408, 504):
        return UpstreamTimeout(message, deployment=deployment_id)
    if status >= 500:
        return UpstreamUnavailable(message, deployment=deployment_id)
    return UpstreamInternal(message, deployment=deployment_id)


def error_body(body: bytes) -> tuple[str, str | None]:
    """The first line of an error answer's message (at most 500 characters) and its code."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    return error_fields(data, text) if isinstance(data, dict) else (first_line(text), None)


def error_fields(data: Mapping[str, Any], text: str) -> tuple[str, str | None]:
    """The message's first line and the code of a decoded error answer (`{"error": ...}`).

    `text` is the answer as received: its first line is the message when the
    error is neither an object nor a string.
    """
    error = data.get("error", data)
    if isinstance(error, Mapping):
        text_field = error.get("message")
        code = error["code"] if isinstance(error.get("code"), str) else None
        return first_line(text_field if isinstance(text_field, str) else ""), code
    return first_line(error if isinstance(error, str) else text), None


def first_line(text: str) -> str:
    """The first line of a provider's message, at most 500 characters."""
    stripped = text.strip()
    return stripped.splitlines()[0][:500] if stripped else ""
