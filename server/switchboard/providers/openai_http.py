"""OpenAI's chat completions over one pooled HTTP client: the fast path.

litellm costs about 4 ms of CPU per call (request transformation, logging
hooks, response objects), which is most of Switchboard's overhead against
a fast upstream. For upstreams that speak OpenAI's API unchanged this
adapter posts the same body litellm would send (built by `openai_wire`),
with one shared keep-alive pool, and maps the answer and every failure
into the same domain types and errors as `LitellmProvider`. It imports no
litellm: prices it does not know and prompt estimates come from callables
the composition root injects.

Lower-layer failures map into the error tree in this module only:

    HTTP status / body code              -> ProviderError
      400 code content_policy_violation     ContentPolicyViolation
      400 code context_length_exceeded      ContextWindowExceeded
          (or litellm's context-window wording)
      429                                   UpstreamRateLimited (retry_after from headers)
      401, 403                              UpstreamAuthError
      404                                   UpstreamNotFound
      400, 413, 422                         UpstreamBadRequest
      408, 504                              UpstreamTimeout
      other 5xx                             UpstreamUnavailable
      anything else                         UpstreamInternal
    httpx.TimeoutException, TimeoutError    UpstreamTimeout
    httpx.TransportError (refused, reset,   UpstreamUnavailable
      truncated body)
    a stream that ends unfinished           UpstreamUnavailable (mid-stream drop)
    an answer that is not OpenAI's JSON     UpstreamInternal
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from switchboard.config import Deployment
from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    ProviderChunk,
    ProviderResponse,
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
from switchboard.providers.sse import DONE, SseDecoder

# Where litellm sends `openai/...` without an api_base (and no OPENAI_BASE_URL).
DEFAULT_API_BASE = "https://api.openai.com/v1"
# The provider's own wording of a too-long prompt, as litellm recognises it
# when a server (vLLM, llama.cpp) sends no `context_length_exceeded` code.
_CONTEXT_WINDOW_WORDING = (
    "this model's maximum context length is",
    "maximum context length",
    "exceeds the available context size",
    "is longer than the model's context length",
)

Price = Callable[[Deployment, Usage], float]
Estimate = Callable[[CompletionRequest], int]


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The shared connection pool, sized for a gateway rather than one client.

    `max_connections` bounds concurrent upstream calls across all deployments
    (the gateway admits 1024 calls by default); idle connections are kept for
    `keepalive_expiry_s`, under most providers' own idle timeouts.
    """

    max_connections: int = 1024
    max_keepalive_connections: int = 256
    keepalive_expiry_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_keepalive_connections < 0:
            raise ValueError("max_connections must be >= 1 and keep-alive connections >= 0")
        if self.keepalive_expiry_s <= 0:
            raise ValueError("keepalive_expiry_s must be positive")


class OpenAIHttpProvider:
    """The `Provider` for OpenAI-compatible deployments, without litellm."""

    def __init__(
        self,
        *,
        fallback_price: Price,
        estimate: Estimate,
        default_api_base: str = DEFAULT_API_BASE,
        default_api_key: str | None = None,
        limits: PoolLimits = PoolLimits(),
        transport: httpx.AsyncBaseTransport | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._fallback_price = fallback_price
        self._estimate = estimate
        self._default_api_base = default_api_base
        self._default_api_key = default_api_key
        self._wall_clock = wall_clock
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry_s,
            ),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the pool; the adapter cannot be used afterwards."""
        await self._client.aclose()

    def serves(self, deployment: Deployment) -> bool:
        """Whether a call to `deployment` needs nothing litellm alone would add.

        Only `openai/...` deployments whose params are at most a base URL and
        a key: any other litellm param (organization, extra headers, Azure's
        api_version, ...) changes what litellm sends, so it keeps the call.
        """
        return (
            deployment.provider == "openai"
            and set(deployment.params) <= {"api_base", "api_key"}
            and (deployment.params.get("api_key") or self._default_api_key) is not None
        )

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        return self._estimate(request)

    def price(self, deployment: Deployment, usage: Usage) -> float:
        configured = configured_price(deployment, usage)
        return self._fallback_price(deployment, usage) if configured is None else configured

    async def complete(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ProviderResponse:
        built = self._request(deployment, request, timeout_s, stream=False)
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.send(built)
        except Exception as exc:
            raise transport_error(exc, deployment.id, timeout_s) from exc
        if not response.is_success:
            raise status_error(
                response.status_code, response.content, response.headers, deployment.id,
                self._wall_clock,
            )  # fmt: skip
        try:
            return parse_response(json.loads(response.content), response.headers)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamInternal(
                f"the provider's answer is not a chat completion: {exc}", deployment=deployment.id
            ) from exc

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> HttpStream:
        built = self._request(deployment, request, timeout_s, stream=True)
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.send(built, stream=True)
        except Exception as exc:
            raise transport_error(exc, deployment.id, timeout_s) from exc
        if not response.is_success:
            try:
                async with asyncio.timeout(timeout_s):
                    body = await response.aread()
            except Exception as exc:
                raise transport_error(exc, deployment.id, timeout_s) from exc
            finally:
                await response.aclose()
            raise status_error(
                response.status_code, body, response.headers, deployment.id, self._wall_clock
            )
        return HttpStream(response, deployment.id, timeout_s, self._wall_clock)

    def _request(
        self, deployment: Deployment, request: CompletionRequest, timeout_s: float, *, stream: bool
    ) -> httpx.Request:
        params = deployment.params
        base = str(params.get("api_base") or self._default_api_base).rstrip("/")
        key = params.get("api_key") or self._default_api_key
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        if key:
            headers["authorization"] = f"Bearer {key}"
        body = {"model": upstream_model(deployment), **request_fields(request)}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return self._client.build_request(
            "POST",
            f"{base}/chat/completions",
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers=headers,
            timeout=timeout_s,
        )


class HttpStream:
    """An open SSE response, iterated as domain chunks; `aclose()` drops the connection.

    Closing before the body is read to its end closes the socket instead of
    returning it to the pool, so the upstream sees the caller leave at once.
    """

    def __init__(
        self,
        response: httpx.Response,
        deployment_id: str,
        timeout_s: float,
        wall_clock: Callable[[], float],
    ) -> None:
        self._response = response
        self._deployment_id = deployment_id
        self._timeout_s = timeout_s
        self._wall_clock = wall_clock

    def __aiter__(self) -> AsyncIterator[ProviderChunk]:
        return self._chunks()

    async def aclose(self) -> None:
        await self._response.aclose()

    async def _chunks(self) -> AsyncIterator[ProviderChunk]:
        decoder = SseDecoder()
        done = finished = False
        try:
            async for line in self._response.aiter_lines():
                data = decoder.feed(line)
                if data is None or done:
                    continue
                if data == DONE:
                    # Read on to the body's end so the connection goes back to the pool.
                    done = True
                    continue
                chunk = self._decode(data)
                if chunk is None:
                    continue
                finished = finished or chunk.finish_reason is not None
                yield chunk
            # The last event, when the server ended the body without its blank line.
            tail = decoder.flush()
            if tail is not None and not done:
                done = tail == DONE
                last = None if done else self._decode(tail)
                if last is not None:
                    finished = finished or last.finish_reason is not None
                    yield last
        except (httpx.TransportError, TimeoutError) as exc:
            raise transport_error(exc, self._deployment_id, self._timeout_s) from exc
        finally:
            await self._response.aclose()
        if not (done or finished):
            raise UpstreamUnavailable(
                "the stream ended before it finished", deployment=self._deployment_id
            )

    def _decode(self, data: str) -> ProviderChunk | None:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise UpstreamInternal(
                f"the provider streamed an event that is not JSON: {data[:100]!r}",
                deployment=self._deployment_id,
            ) from exc
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            # vLLM and others report a failure after the 200 as an error event.
            code = payload["error"].get("code")
            status = code if isinstance(code, int) else 500
            raise status_error(status, data.encode(), {}, self._deployment_id, self._wall_clock)
        try:
            return parse_chunk(payload)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamInternal(
                f"the provider streamed an event that is not a chunk: {exc}",
                deployment=self._deployment_id,
            ) from exc


def upstream_model(deployment: Deployment) -> str:
    """The model name the upstream knows: litellm's string without its provider prefix."""
    prefix = f"{deployment.provider}/"
    return deployment.model.removeprefix(prefix)


def transport_error(exc: BaseException, deployment_id: str, timeout_s: float) -> ProviderError:
    """A failure below HTTP: no answer in time, or no usable connection."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return UpstreamTimeout(
            f"the provider did not answer within {timeout_s:g}s", deployment=deployment_id
        )
    if isinstance(exc, httpx.TransportError | OSError):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return UpstreamUnavailable(f"connection error: {detail}"[:500], deployment=deployment_id)
    return UpstreamInternal(f"{type(exc).__name__}: {exc}"[:500], deployment=deployment_id)


def status_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    deployment_id: str,
    wall_clock: Callable[[], float],
) -> ProviderError:
    """Map an HTTP error answer into the error tree, as `litellm_adapter.classify` does."""
    message, code = _error_body(body)
    message = message or f"HTTP {status}"
    lowered = message.lower()
    if code == "content_policy_violation":
        return ContentPolicyViolation(message, deployment=deployment_id)
    if code == "context_length_exceeded" or (
        status == 400 and any(w in lowered for w in _CONTEXT_WINDOW_WORDING)
    ):
        return ContextWindowExceeded(message, deployment=deployment_id)
    if status == 429:
        return UpstreamRateLimited(
            message,
            deployment=deployment_id,
            retry_after=parse_retry_after(headers, wall_clock),
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


def _error_body(body: bytes) -> tuple[str, str | None]:
    """The first line of the provider's message (at most 500 characters) and its code."""
    text = body.decode("utf-8", "replace").strip()
    message, code = text, None
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            text_field = error.get("message")
            message = text_field if isinstance(text_field, str) else ""
            code = error["code"] if isinstance(error.get("code"), str) else None
        elif isinstance(error, str):
            message = error
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first[:500], code


def parse_response(data: Mapping[str, Any], headers: Mapping[str, str]) -> ProviderResponse:
    """A `chat.completion` JSON body (and its rate-limit headers) as a domain response."""
    choice = data["choices"][0]
    message = choice.get("message") or {}
    tool_calls = tuple(
        ToolCall(
            id=c.get("id") or "",
            name=(c.get("function") or {}).get("name") or "",
            arguments=_arguments((c.get("function") or {}).get("arguments")),
        )
        for c in message.get("tool_calls") or ()
    )
    return ProviderResponse(
        id=data.get("id") or "",
        model=data.get("model") or "",
        message=Message(
            role=Role.ASSISTANT, content=message.get("content") or "", tool_calls=tool_calls
        ),
        finish_reason=FinishReason.from_provider(choice.get("finish_reason")),
        usage=parse_usage(data.get("usage")) or Usage(),
        rate_limit=parse_rate_limit(headers),
    )


def parse_chunk(data: Mapping[str, Any]) -> ProviderChunk | None:
    """A `chat.completion.chunk` as a domain chunk; None when it carries nothing."""
    usage = parse_usage(data.get("usage"))
    choices = data.get("choices") or ()
    content = ""
    deltas: tuple[ToolCallDelta, ...] = ()
    finish: FinishReason | None = None
    if choices:
        choice = choices[0]
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        deltas = tuple(
            ToolCallDelta(
                index=int(c.get("index") or 0),
                id=c.get("id") or "",
                name=(c.get("function") or {}).get("name") or "",
                arguments=(c.get("function") or {}).get("arguments") or "",
            )
            for c in delta.get("tool_calls") or ()
        )
        if choice.get("finish_reason"):
            finish = FinishReason.from_provider(choice["finish_reason"])
    if not content and not deltas and finish is None and usage is None:
        return None
    return ProviderChunk(
        content=content,
        tool_calls=deltas,
        id=data.get("id") or "",
        model=data.get("model") or "",
        finish_reason=finish,
        usage=usage,
    )


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_input_tokens=int(cached or 0),
    )


def _arguments(value: Any) -> str:
    """OpenAI sends a JSON string; some compatible servers send the object itself."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
