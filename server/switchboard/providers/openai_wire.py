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

import base64
import functools
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from switchboard.domain import (
    AudioPart,
    CompletionRequest,
    FinishReason,
    ImagePart,
    Message,
    ProviderChunk,
    ProviderResponse,
    Role,
    Sampling,
    TextPart,
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
from switchboard.redact import redact

log = logging.getLogger(__name__)


def request_fields(request: CompletionRequest) -> dict[str, Any]:
    """`messages`, the sampling fields the caller set, `tools`, `tool_choice`,
    `response_format`, the options set and `extra_params`."""
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
    fields.update(request.options.openai())
    for key, value in request.options.extra_params.items():
        fields.setdefault(key, value)  # the edge refused any that collide
    if request.response_format is not None:
        # OpenAI's shape: sent as is on the fast path; litellm translates it for the rest
        # (Anthropic's output_format, Gemini's response schema, a forced tool on Bedrock
        # and Groq: tests/contract pins each).
        fields["response_format"] = request.response_format.openai()
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
    content: str | list[dict[str, Any]] = message.content
    if message.parts:
        content = content_parts(message)
    out: dict[str, Any] = {"role": message.role.value, "content": content}
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


def content_parts(message: Message) -> list[dict[str, Any]]:
    """OpenAI's content parts (litellm translates them for other providers)."""
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image: dict[str, Any] = {"url": part.data_url()}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part, AudioPart):
            data = base64.b64encode(part.data).decode()
            parts.append(
                {"type": "input_audio", "input_audio": {"data": data, "format": part.format}}
            )
        else:
            encoded = base64.b64encode(part.data).decode()
            file: dict[str, Any] = {"file_data": f"data:{part.media_type};base64,{encoded}"}
            if part.filename:
                file["filename"] = part.filename
            parts.append({"type": "file", "file": file})
    return parts


# --- answers -------------------------------------------------------------------
#
# The parsers below read OpenAI's response and chunk shapes from either the
# JSON the fast path decodes (dicts) or the response objects litellm returns
# (attributes), through `_get`: one parser serves both adapters without
# converting litellm's objects to dicts on every chunk.
#
# An answer is the provider's input: every field is checked for its type and
# every number for its range, and anything else raises `MalformedAnswer`,
# which the adapters turn into a retryable `UpstreamUnavailable` (`malformed`).

# No answer carries more choices than this (a request asks for at most 8).
MAX_CHOICES = 16
# No call counts more tokens than this: a larger usage is garbage, not a bill.
MAX_TOKEN_COUNT = 10**9
# A tool call's index in a stream; no answer carries more calls than this.
MAX_TOOL_INDEX = 4096
# Ids and model names longer than this are cut: they travel to callers and spans.
MAX_LABEL_CHARS = 256


class MalformedAnswer(ValueError):
    """An answer that is not OpenAI's shape; the message is ours, never the provider's text."""


class MalformedUsage(MalformedAnswer):
    """The usage block alone is unreadable: the answer's text may still be good."""


def _get(obj: Any, name: str) -> Any:
    # JSON's dicts first: the ABC check below costs more than the read.
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _object(value: Any, field: str, *, optional: bool = False) -> Any:
    """A JSON object (or one of litellm's response objects)."""
    if type(value) is dict:
        return value
    if value is None and optional:
        return None
    if value is None or isinstance(value, str | bytes | int | float | list | tuple):
        raise MalformedAnswer(f"{field} is not an object")
    return value


def _list(value: Any, field: str) -> list[Any] | tuple[Any, ...]:
    if type(value) is list:
        return value
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise MalformedAnswer(f"{field} is not a list")
    return value


def _text(value: Any, field: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedAnswer(f"{field} is not a string")
    return value


def _label(value: Any, field: str) -> str:
    return _text(value, field)[:MAX_LABEL_CHARS]


def _count(value: Any, field: str, upper: int = MAX_TOKEN_COUNT) -> int:
    """A non-negative integer up to `upper` (an integral float is accepted)."""
    if type(value) is int and 0 <= value <= upper:
        return value
    if value is None:
        return 0
    if isinstance(value, bool):
        raise MalformedAnswer(f"{field} is not an integer")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise MalformedAnswer(f"{field} is not an integer")
    if not 0 <= value <= upper:
        raise MalformedAnswer(f"{field} is out of range")
    return value


def _finish(value: Any, field: str) -> FinishReason | None:
    reason = _text(value, field)
    return FinishReason.from_provider(reason) if reason else None


def parse_response(data: Any, headers: Mapping[str, str] | None) -> ProviderResponse:
    """A `chat.completion` (and its rate-limit headers) as a domain response."""
    _object(data, "the answer")
    choices = _list(_get(data, "choices"), "choices")
    if not choices:
        raise MalformedAnswer("the answer has no choices")
    if len(choices) > MAX_CHOICES:
        raise MalformedAnswer(f"the answer has {len(choices)} choices; at most {MAX_CHOICES}")
    choice = _object(choices[0], "choices[0]")
    messages = tuple(_choice_message(c, i) for i, c in enumerate(choices))
    finish = _finish(_get(choice, "finish_reason"), "choices[0].finish_reason")
    if finish is FinishReason.TOOL_CALLS and not messages[0].tool_calls:
        # litellm turns a forced JSON tool call (structured output on Groq) into text
        # but keeps the provider's "tool_calls": the answer is text, and it is whole.
        finish = FinishReason.STOP
    return ProviderResponse(
        id=_label(_get(data, "id"), "id"),
        model=_label(_get(data, "model"), "model"),
        message=messages[0],
        finish_reason=finish or FinishReason.STOP,
        usage=parse_usage(_get(data, "usage")) or Usage(),
        rate_limit=parse_rate_limit(headers) if headers else None,
        choices=messages if len(messages) > 1 else (),
    )


def _choice_message(raw: Any, index: int) -> Message:
    where = f"choices[{index}]"
    message = _object(_get(_object(raw, where), "message"), f"{where}.message")
    tool_calls = tuple(
        _tool_call(c, f"{where}.message.tool_calls[{i}]")
        for i, c in enumerate(_list(_get(message, "tool_calls"), f"{where}.message.tool_calls"))
    )
    return Message(
        role=Role.ASSISTANT,
        content=_text(_get(message, "content"), f"{where}.message.content"),
        tool_calls=tool_calls,
    )


def _tool_call(raw: Any, field: str) -> ToolCall:
    call = _object(raw, field)
    function = _object(_get(call, "function"), f"{field}.function")
    return ToolCall(
        id=_label(_get(call, "id"), f"{field}.id"),
        name=_text(_get(function, "name"), f"{field}.function.name"),
        arguments=_arguments(_get(function, "arguments"), f"{field}.function.arguments"),
    )


def _reader(obj: Any) -> Callable[[str], Any]:
    """`_get` bound to `obj`: a JSON dict's own `get` where it is one (most events)."""
    if type(obj) is dict:
        return obj.get
    return functools.partial(_get, obj)


def parse_chunk(data: Any, *, read_usage: bool = True) -> ProviderChunk | None:
    """A `chat.completion.chunk` as a domain chunk; None when it carries nothing."""
    get = _reader(_object(data, "the event"))
    usage = parse_usage(get("usage")) if read_usage else None
    choices = _list(get("choices"), "choices")
    content = ""
    deltas: tuple[ToolCallDelta, ...] = ()
    finish: FinishReason | None = None
    if choices:
        choice = _reader(_object(choices[0], "choices[0]"))
        delta = _object(choice("delta"), "choices[0].delta", optional=True)
        if delta is not None:
            read = _reader(delta)
            content = _text(read("content"), "choices[0].delta.content")
            calls = _list(read("tool_calls"), "choices[0].delta.tool_calls")
            if calls:  # most chunks carry text only
                deltas = tuple(
                    _tool_call_delta(c, f"choices[0].delta.tool_calls[{i}]")
                    for i, c in enumerate(calls)
                )
        finish = _finish(choice("finish_reason"), "choices[0].finish_reason")
    if not content and not deltas and finish is None and usage is None:
        return None
    return ProviderChunk(
        content=content,
        tool_calls=deltas,
        id=_label(get("id"), "id"),
        model=_label(get("model"), "model"),
        finish_reason=finish,
        usage=usage,
    )


def _tool_call_delta(raw: Any, field: str) -> ToolCallDelta:
    call = _object(raw, field)
    function = _object(_get(call, "function"), f"{field}.function", optional=True)
    return ToolCallDelta(
        index=_count(_get(call, "index"), f"{field}.index", MAX_TOOL_INDEX),
        id=_label(_get(call, "id"), f"{field}.id"),
        name=_text(_get(function, "name"), f"{field}.function.name") if function else "",
        arguments=_text(_get(function, "arguments"), f"{field}.function.arguments")
        if function
        else "",
    )


def stream_chunk(data: Any, deployment_id: str, *, delivered: bool) -> ProviderChunk | None:
    """One decoded stream event as a chunk, for both adapters; unreadable ones are `malformed`.

    Unreadable usage once text was delivered (`delivered`) costs only the
    count, not the answer: it is dropped, and the gateway counts the chunks
    instead, rather than failing a stream that can no longer fall back.
    Before that, it fails like any malformed event, so the gateway falls back.
    """
    try:
        try:
            return parse_chunk(data)
        except MalformedUsage as exc:
            if not delivered:
                raise
            log.warning(
                "deployment %s streamed unreadable usage after its answer (%s); "
                "its chunks are counted instead",
                deployment_id,
                exc,
            )
            return parse_chunk(data, read_usage=False)
    except MalformedAnswer as exc:
        raise malformed(deployment_id, f"a streamed event: {exc}") from None
    except Exception as exc:  # no parser failure leaves the provider layer bare
        raise malformed(
            deployment_id, "a streamed event is unreadable", detail=type(exc).__name__
        ) from None


async def require_answer(
    chunks: AsyncIterator[ProviderChunk], deployment_id: str
) -> AsyncIterator[ProviderChunk]:
    """`chunks`, once the stream shows it is an answer; `malformed` if it never does.

    A chunk with text, a tool call or usage is an answer. Chunks before it
    that carry only a finish reason (litellm makes one up for a stream it
    could not read, an HTML page say) are held back, so a stream that ends
    without an answer fails before anything reached the caller and the
    gateway can still fall back.
    """
    held: list[ProviderChunk] = []
    answered = False
    async for chunk in chunks:
        if not answered:
            if not (chunk.content or chunk.tool_calls or chunk.usage is not None):
                held.append(chunk)
                continue
            answered = True
            for early in held:
                yield early
            held.clear()
        yield chunk
    if not answered:
        raise malformed(deployment_id, "the stream ended without an answer")


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
    """The answer's token counts; None when it reports none."""
    try:
        return _usage(raw)
    except MalformedUsage:
        raise
    except MalformedAnswer as exc:
        raise MalformedUsage(str(exc)) from None


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    _object(raw, "usage")
    details = _object(
        _get(raw, "prompt_tokens_details"), "usage.prompt_tokens_details", optional=True
    )
    cached = _get(details, "cached_tokens") if details is not None else None
    return Usage(
        input_tokens=_count(_get(raw, "prompt_tokens"), "usage.prompt_tokens"),
        output_tokens=_count(_get(raw, "completion_tokens"), "usage.completion_tokens"),
        cached_input_tokens=_count(cached, "usage.prompt_tokens_details.cached_tokens"),
    )


def _arguments(value: Any, field: str) -> str:
    """OpenAI sends a JSON string; some compatible servers send the object itself."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise MalformedAnswer(f"{field} is neither a string nor an object")
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise MalformedAnswer(f"{field} is not JSON") from exc


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

    `message` (the provider's words) only classifies and goes to the log,
    redacted; the error's own message is `describe`'s.
    """
    kind: type[ProviderError]
    retry_after: float | None = None
    if code == "content_policy_violation":
        kind = ContentPolicyViolation
    elif code == "context_length_exceeded" or (
        status == 400 and any(w in message.lower() for w in _CONTEXT_WINDOW_WORDING)
    ):
        kind = ContextWindowExceeded
    elif status == 429:
        kind = UpstreamRateLimited
        retry_after = parse_retry_after(headers, wall_clock)
    elif status in (401, 403):
        kind = UpstreamAuthError
    elif status == 404:
        kind = UpstreamNotFound
    elif status in (400, 413, 422):
        kind = UpstreamBadRequest
    elif status in (408, 504):
        kind = UpstreamTimeout
    elif status >= 500:
        kind = UpstreamUnavailable
    else:
        kind = UpstreamInternal
    return upstream_failure(
        kind, deployment_id, status=status, code=code, detail=message, retry_after=retry_after
    )


# What each kind of failure is called in our own words; `{d}` is the deployment.
_DESCRIPTIONS: dict[type[ProviderError], str] = {
    UpstreamRateLimited: "rate limited by deployment {d}",
    UpstreamTimeout: "deployment {d} timed out",
    UpstreamUnavailable: "deployment {d} is unavailable",
    UpstreamBadRequest: "deployment {d} rejected the request",
    ContextWindowExceeded: "the prompt exceeds the context window of deployment {d}",
    ContentPolicyViolation: "deployment {d} refused the content (content policy)",
    UpstreamAuthError: "deployment {d} refused our credentials",
    UpstreamNotFound: "deployment {d} does not know its configured model",
    UpstreamInternal: "deployment {d} failed",
}
_MALFORMED = "deployment {d} sent a malformed answer"
# A provider's error code is shown to callers only when it looks like a code.
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# Statuses outside HTTP's error range are not believed (an in-stream error event
# may carry any number as its code).
_ERROR_STATUSES = range(400, 600)


def safe_code(code: object) -> str | None:
    """The provider's error code when it is one (`rate_limit_exceeded`), else None."""
    if not isinstance(code, str) or not _CODE.fullmatch(code) or redact(code) != code:
        return None
    return code


def error_status(value: object) -> int:
    """An error event's HTTP status: its code when that is an error status, else 500."""
    if isinstance(value, int) and not isinstance(value, bool) and value in _ERROR_STATUSES:
        return value
    return 500


def describe(
    kind: type[ProviderError],
    deployment_id: str,
    *,
    status: int | None = None,
    code: str | None = None,
    reason: str | None = None,
    template: str | None = None,
) -> str:
    """Our own words for a failure: kind, deployment, HTTP status, error code, our reason.

    For example `rate limited by deployment gpt-a (HTTP 429, rate_limit_exceeded)`.
    `reason` must be our text too; the provider's never goes here.
    """
    template = template or next(
        (text for cls, text in _DESCRIPTIONS.items() if issubclass(kind, cls)),
        "deployment {d} failed",
    )
    facts = [f"HTTP {status}"] if status is not None else []
    facts += [c for c in (safe_code(code), reason) if c]
    head = template.format(d=deployment_id or "?")
    return f"{head} ({', '.join(facts)})" if facts else head


def upstream_failure(
    kind: type[ProviderError],
    deployment_id: str,
    *,
    status: int | None = None,
    code: str | None = None,
    reason: str | None = None,
    detail: str = "",
    retry_after: float | None = None,
    template: str | None = None,
) -> ProviderError:
    """The error for one failed upstream answer, logged once here with the provider's words.

    The log line is the only place the provider's text (`detail`) goes, and
    only redacted; the error carries our description (`describe`).
    """
    code = safe_code(code)
    redacted = redact(detail) if detail else ""
    error = kind(
        describe(kind, deployment_id, status=status, code=code, reason=reason, template=template),
        deployment=deployment_id,
        retry_after=retry_after,
        http_status=status,
        upstream_code=code,
        upstream_detail=redacted,
    )
    log.log(
        min(error.log_level, logging.WARNING),
        "upstream failure: %s%s",
        error.message,
        f"; provider said: {redacted}" if redacted else "",
    )
    return error


def malformed(
    deployment_id: str, reason: str, *, status: int | None = 200, detail: str = ""
) -> ProviderError:
    """A retryable `UpstreamUnavailable` for an answer that is not OpenAI's shape.

    Whatever is wrong with it, another deployment may answer well: the
    gateway falls back, and the caller never sees the parser's text.
    """
    return upstream_failure(
        UpstreamUnavailable,
        deployment_id,
        status=status,
        reason=reason,
        detail=detail,
        template=_MALFORMED,
    )


def error_body(body: bytes) -> tuple[str, str | None]:
    """The first line of an error answer's message (at most 500 characters) and its code."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text else None
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
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
