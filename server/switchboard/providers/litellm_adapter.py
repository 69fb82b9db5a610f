"""Every provider through litellm, one call at a time.

litellm is imported here and nowhere else, once, when the composition root
builds this adapter. Everything a call needs (key, base URL, timeout) is
passed per call: no `litellm.*` globals and no litellm Router, because
retries, fallbacks and routing belong to `routing/` and the gateway.

litellm's exceptions are mapped into Switchboard's error tree in
`classify()`, the one place that knows both.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

# Must be set before litellm is imported: otherwise litellm fetches its
# model cost map from the internet at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm
import openai
from litellm.exceptions import (
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InternalServerError,
    ServiceUnavailableError,
)

from switchboard.config import Deployment
from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    ProviderChunk,
    ProviderResponse,
    RateLimitHint,
    Role,
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
from switchboard.providers.base import configured_price
from switchboard.providers.openai_wire import request_fields
from switchboard.providers.retry_after import parse_rate_limit, parse_retry_after
from switchboard.providers.tokens import PromptEstimator


class LitellmProvider:
    """The `Provider` for every litellm model string."""

    def __init__(self, *, drop_params: bool = False, wall_clock: Callable[[], float] = time.time):
        self._drop_params = drop_params
        self._wall_clock = wall_clock
        self._estimator = PromptEstimator.bundled()
        self._unpriced: set[str] = set()

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        return self._estimator.prompt_tokens(request)

    async def aclose(self) -> None:
        """Nothing to release: litellm keeps its own clients for the process's life."""

    async def complete(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ProviderResponse:
        kwargs = self._call_args(deployment, request, timeout_s, stream=False)
        try:
            async with asyncio.timeout(timeout_s):
                raw = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise classify(exc, deployment.id, self._wall_clock) from exc
        return _response(raw)

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> _LitellmStream:
        kwargs = self._call_args(deployment, request, timeout_s, stream=True)
        try:
            async with asyncio.timeout(timeout_s):
                raw = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise classify(exc, deployment.id, self._wall_clock) from exc
        return _LitellmStream(raw, deployment.id, self._wall_clock)

    def price(self, deployment: Deployment, usage: Usage) -> float:
        configured = configured_price(deployment, usage)
        if configured is not None:
            return configured
        if deployment.model in self._unpriced:
            return 0.0
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=deployment.model,
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
            )
        except Exception:  # a model absent from litellm's cost map has no known price
            # litellm searches its whole map before failing (about half a millisecond):
            # a model it does not know is remembered as unknown.
            self._unpriced.add(deployment.model)
            return 0.0
        return float(prompt_cost) + float(completion_cost)

    def _call_args(
        self, deployment: Deployment, request: CompletionRequest, timeout_s: float, *, stream: bool
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(deployment.params)
        kwargs.update(
            model=deployment.model,
            stream=stream,
            timeout=timeout_s,
            # Retries are the gateway's: one litellm call is one attempt.
            num_retries=0,
            max_retries=0,
        )
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        if self._drop_params:
            kwargs["drop_params"] = True
        # messages, sampling, tools: the fields the fast path sends too (openai_wire.py).
        kwargs.update(request_fields(request))
        return kwargs


class _LitellmStream:
    """Iterates litellm's stream as domain chunks; closes the upstream on `aclose()`."""

    def __init__(self, raw: Any, deployment_id: str, wall_clock: Callable[[], float]):
        self._raw = raw
        self._deployment_id = deployment_id
        self._wall_clock = wall_clock

    def __aiter__(self) -> AsyncIterator[ProviderChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[ProviderChunk]:
        try:
            async for raw in self._raw:
                chunk = _chunk(raw)
                if chunk is not None:
                    yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            raise classify(exc, self._deployment_id, self._wall_clock) from exc

    async def aclose(self) -> None:
        await self._raw.aclose()


def classify(
    exc: BaseException, deployment_id: str, wall_clock: Callable[[], float]
) -> ProviderError:
    """Map a litellm/openai/httpx exception into Switchboard's error tree."""
    message = _short(exc)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ContextWindowExceededError):
        return ContextWindowExceeded(message, deployment=deployment_id)
    if isinstance(exc, ContentPolicyViolationError) or _code(exc) == "content_policy_violation":
        return ContentPolicyViolation(message, deployment=deployment_id)
    if _code(exc) == "context_length_exceeded":
        return ContextWindowExceeded(message, deployment=deployment_id)
    if isinstance(exc, openai.RateLimitError):
        return UpstreamRateLimited(
            message,
            deployment=deployment_id,
            retry_after=parse_retry_after(_headers(exc), wall_clock),
        )
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx.TimeoutException):
        return UpstreamTimeout(
            message or "the provider did not answer in time", deployment=deployment_id
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamAuthError(message, deployment=deployment_id)
    if isinstance(exc, openai.NotFoundError):
        return UpstreamNotFound(message, deployment=deployment_id)
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return UpstreamBadRequest(message, deployment=deployment_id)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | ConnectionError):
        return UpstreamUnavailable(message, deployment=deployment_id)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status >= 500 or status == 408):
        return UpstreamUnavailable(message, deployment=deployment_id)
    if isinstance(exc, ServiceUnavailableError | InternalServerError):
        return UpstreamUnavailable(message, deployment=deployment_id)
    return UpstreamInternal(message, deployment=deployment_id)


def _code(exc: BaseException) -> str | None:
    """OpenAI's machine-readable error code; litellm's text matching misses some."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        nested = body.get("error", body)
        if isinstance(nested, Mapping) and isinstance(nested.get("code"), str):
            return str(nested["code"])
    return None


def _headers(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        return dict(headers)
    explicit = getattr(exc, "headers", None)
    return dict(explicit) if isinstance(explicit, Mapping) else {}


def _short(exc: BaseException) -> str:
    """One line of the provider's message, without litellm's help banners."""
    text = str(getattr(exc, "message", "") or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:500]


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    details = getattr(raw, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        input_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
        cached_input_tokens=int(cached or 0),
    )


def _response(raw: Any) -> ProviderResponse:
    choice = raw.choices[0]
    message = choice.message
    tool_calls = tuple(
        ToolCall(
            id=c.id or "",
            name=c.function.name or "",
            arguments=c.function.arguments
            if isinstance(c.function.arguments, str)
            else json.dumps(c.function.arguments),
        )
        for c in (getattr(message, "tool_calls", None) or ())
    )
    return ProviderResponse(
        id=raw.id or "",
        model=raw.model or "",
        message=Message(role=Role.ASSISTANT, content=message.content or "", tool_calls=tool_calls),
        finish_reason=FinishReason.from_provider(choice.finish_reason),
        usage=_usage(getattr(raw, "usage", None)) or Usage(),
        rate_limit=_rate_limit(raw),
    )


def _rate_limit(raw: Any) -> RateLimitHint | None:
    hidden = getattr(raw, "_hidden_params", None)
    headers = hidden.get("additional_headers") if isinstance(hidden, Mapping) else None
    return parse_rate_limit(headers) if isinstance(headers, Mapping) else None


def _chunk(raw: Any) -> ProviderChunk | None:
    usage = _usage(getattr(raw, "usage", None))
    choices = getattr(raw, "choices", None) or ()
    content = ""
    deltas: tuple[ToolCallDelta, ...] = ()
    finish: FinishReason | None = None
    if choices:
        choice = choices[0]
        delta = choice.delta
        content = getattr(delta, "content", None) or ""
        deltas = tuple(
            ToolCallDelta(
                index=int(c.index or 0),
                id=c.id or "",
                name=(c.function.name or "") if c.function else "",
                arguments=(c.function.arguments or "") if c.function else "",
            )
            for c in (getattr(delta, "tool_calls", None) or ())
        )
        if choice.finish_reason:
            finish = FinishReason.from_provider(choice.finish_reason)
    if not content and not deltas and finish is None and usage is None:
        return None
    return ProviderChunk(
        content=content,
        tool_calls=deltas,
        id=getattr(raw, "id", "") or "",
        model=getattr(raw, "model", "") or "",
        finish_reason=finish,
        usage=usage,
    )
