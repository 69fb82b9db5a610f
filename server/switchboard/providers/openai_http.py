"""OpenAI's chat completions over one pooled HTTP/1.1 client: the fast path.

litellm costs about 4 ms of CPU per call (request transformation, logging
hooks, response objects), which is most of Switchboard's overhead against
a fast upstream. For upstreams that speak OpenAI's API unchanged this
adapter posts the same body litellm would send, with one shared keep-alive
pool, and reads answers and failures with the same wire module
(`openai_wire`) as `LitellmProvider`, so both produce the same domain types
and errors. It imports no litellm: prices it does not know and prompt
estimates come from callables the composition root injects.

The client is `http1.HttpClient`, chosen by measurement (`bench/http_clients.py`):
httpx's pool checks every pooled connection on each request, so a call's
CPU grew with the number of connections open, and aiohttp's client, flat,
still spends several times more CPU per request than this small one.

Lower-layer failures map into the error tree in this module only:

    an HTTP error status                    openai_wire.status_error
    TimeoutError (the call's deadline)      UpstreamTimeout
    HttpError, OSError (refused, reset,     UpstreamUnavailable
      closed early, bad HTTP)
    a stream that ends unfinished           UpstreamUnavailable (mid-stream drop)
    an answer or event that is not          UpstreamUnavailable (openai_wire.malformed)
      OpenAI's JSON, of any kind, or a
      stream that ends without a chunk

Every error's message is our own description; what the provider or the
socket said goes to the log, redacted, and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from switchboard.config import Deployment
from switchboard.domain import CompletionRequest, ProviderChunk, ProviderResponse, Usage
from switchboard.errors import (
    ProviderError,
    UpstreamInternal,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.providers.base import configured_price
from switchboard.providers.http1 import HttpClient, HttpError, Request, Response
from switchboard.providers.openai_wire import (
    MalformedAnswer,
    error_body,
    error_fields,
    error_status,
    malformed,
    merge_chunks,
    parse_response,
    request_fields,
    require_answer,
    status_error,
    stream_chunk,
    upstream_failure,
)
from switchboard.providers.sse import DONE, SseDecoder

# Where litellm sends `openai/...` without an api_base (and no OPENAI_BASE_URL).
DEFAULT_API_BASE = "https://api.openai.com/v1"
# An SSE line longer than this is not a chat chunk: the stream is refused
# rather than buffered without bound.
MAX_SSE_LINE_BYTES = 8 * 1024 * 1024
# An error answer is read up to this many bytes; only its first line is kept.
MAX_ERROR_BODY_BYTES = 64 * 1024
# A chat completion larger than this is not one a caller could receive
# (gRPC's messages are smaller): it is refused rather than buffered.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# What of a malformed answer's body the log may show (redacted).
_SAMPLE_BYTES = 200
# json.dumps with separators builds an encoder per call; this one is built once.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))

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
    keepalive_expiry_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._fallback_price = fallback_price
        self._estimate = estimate
        self._default_api_base = default_api_base
        self._default_api_key = default_api_key
        self._wall_clock = wall_clock
        self._limits = limits
        # Built on first use: its semaphore belongs to the running loop.
        self._client: HttpClient | None = None
        # Per deployment id: the request line and headers, built once.
        self._targets: dict[str, _Target] = {}

    async def aclose(self) -> None:
        """Close the pool; the adapter cannot be used afterwards."""
        if self._client is not None:
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

    def dropped_params(self, deployment: Deployment, request: CompletionRequest) -> tuple[str, ...]:
        """None: an OpenAI-compatible upstream takes OpenAI's options (or refuses them)."""
        return ()

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        return self._estimate(request)

    def price(self, deployment: Deployment, usage: Usage) -> float:
        configured = configured_price(deployment, usage)
        return self._fallback_price(deployment, usage) if configured is None else configured

    async def complete(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ProviderResponse:
        target = self._target(deployment)
        body = _body(deployment, request, stream=False)
        response: Response | None = None
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._pool().post(target.json, body)
                if response.status >= 400:
                    raise await _failed(response, deployment.id, self._wall_clock)
                content = await response.read(MAX_ANSWER_BYTES + 1)
                headers = response.headers
        except BaseException as exc:
            if response is not None:
                response.close()
            if not isinstance(exc, Exception):
                raise

            raise transport_error(exc, deployment.id, timeout_s) from exc
        return answer(content, headers, deployment.id)

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> HttpStream:
        target = self._target(deployment)
        body = _body(deployment, request, stream=True)
        response: Response | None = None
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._pool().post(target.sse, body)
                if response.status >= 400:
                    raise await _failed(response, deployment.id, self._wall_clock)
        except BaseException as exc:
            if response is not None:
                response.close()
            if isinstance(exc, Exception):
                raise transport_error(exc, deployment.id, timeout_s) from exc
            raise
        return HttpStream(response, deployment.id, timeout_s)

    def _pool(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(
                max_connections=self._limits.max_connections,
                keepalive_s=self._limits.keepalive_expiry_s,
            )
        return self._client

    def _target(self, deployment: Deployment) -> _Target:
        target = self._targets.get(deployment.id)
        if target is None or target.deployment is not deployment:
            target = _Target.build(deployment, self._default_api_base, self._default_api_key)
            self._targets[deployment.id] = target
        return target


@dataclass(frozen=True, slots=True)
class _Target:
    """Where and how a deployment is called; the same for every call to it."""

    deployment: Deployment
    json: Request
    sse: Request

    @classmethod
    def build(cls, deployment: Deployment, default_base: str, default_key: str | None) -> _Target:
        params = deployment.params
        base = str(params.get("api_base") or default_base).rstrip("/")
        key = params.get("api_key") or default_key
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{base}/chat/completions"
        return cls(
            deployment,
            Request.post(url, {**headers, "Accept": "application/json"}),
            Request.post(url, {**headers, "Accept": "text/event-stream"}),
        )


def _body(deployment: Deployment, request: CompletionRequest, *, stream: bool) -> bytes:
    body = {"model": upstream_model(deployment), **request_fields(request)}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return _COMPACT_JSON.encode(body).encode()


async def _failed(
    response: Response, deployment_id: str, wall_clock: Callable[[], float]
) -> ProviderError:
    """The error an HTTP error answer stands for, its body read within bounds."""
    body = await response.read(MAX_ERROR_BODY_BYTES)
    message, code = error_body(body)
    return status_error(response.status, message, code, response.headers, deployment_id, wall_clock)


class HttpStream:
    """An open SSE response, iterated as domain chunks; `aclose()` drops the connection.

    Closing before the body is read to its end closes the socket instead of
    returning it to the pool, so the upstream sees the caller leave at once.
    """

    def __init__(self, response: Response, deployment_id: str, timeout_s: float) -> None:
        self._response = response
        self._deployment_id = deployment_id
        self._timeout_s = timeout_s

    def __aiter__(self) -> AsyncIterator[ProviderChunk]:
        return require_answer(self._chunks(), self._deployment_id)

    async def aclose(self) -> None:
        # A no-op once the body was read to its end and released to the pool.
        self._response.close()

    async def _chunks(self) -> AsyncIterator[ProviderChunk]:
        """Chunks as they arrive; the events of one read leave merged where they can.

        Except the first with an answer (text or a tool call): it leaves as
        soon as it is decoded, with what came before it, before the rest of
        its read is parsed, because the time to the first chunk is the one a
        caller waits on.
        """
        decoder = SseDecoder()
        done = finished = seen = False
        try:
            async for lines in self._reads():
                pending: ProviderChunk | None = None
                for line in lines:
                    # Decoded one at a time: the first answer leaves before the rest is read.
                    data = (
                        decoder.feed(line.rstrip(b"\r").decode("utf-8", "replace"))
                        if line is not None
                        else decoder.flush()
                    )
                    if data is None or done:
                        continue
                    if data == DONE:
                        # Read on to the body's end so the connection goes back to the pool.
                        done = True
                        continue
                    try:
                        chunk = self._decode(data, delivered=seen)
                    except ProviderError:
                        if pending is not None:
                            yield pending  # what came before the error event is the caller's
                        raise
                    if chunk is None:
                        continue
                    first = not seen and bool(chunk.content or chunk.tool_calls)
                    seen = seen or first
                    finished = finished or chunk.finish_reason is not None
                    if pending is None:
                        pending = chunk
                    elif (merged := merge_chunks(pending, chunk)) is not None:
                        pending = merged
                    else:
                        yield pending
                        pending = chunk
                    if first:
                        yield pending
                        pending = None
                if pending is not None:
                    yield pending
        except (HttpError, OSError, TimeoutError) as exc:
            raise transport_error(exc, self._deployment_id, self._timeout_s) from exc
        finally:
            self._response.close()
        if not (done or finished):
            raise upstream_failure(
                UpstreamUnavailable,
                self._deployment_id,
                reason="the stream ended before it finished",
            )

    async def _reads(self) -> AsyncIterator[Sequence[bytes | None]]:
        """The body's lines, without their \\n, a read at a time, each bounded in length.

        The last batch ends with None: the body ended, and an event the server
        left without its blank line ends there too.
        """
        response = self._response
        pending = b""
        while True:
            data = response.buffered()
            if data is None:
                async with asyncio.timeout(self._timeout_s):
                    data = await response.next_chunk()
                if data is None:
                    break
            pending += data
            *lines, pending = pending.split(b"\n")
            if lines:
                yield lines
            if len(pending) > MAX_SSE_LINE_BYTES:
                raise malformed(
                    self._deployment_id, f"a streamed line over {MAX_SSE_LINE_BYTES} bytes"
                )
        yield [pending, None] if pending else [None]

    def _decode(self, data: str, *, delivered: bool) -> ProviderChunk | None:
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            raise malformed(
                self._deployment_id, "a streamed event is not JSON", detail=data[:_SAMPLE_BYTES]
            ) from None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            # vLLM and others report a failure after the 200 as an error event.
            status = error_status(payload["error"].get("code"))
            message, text_code = error_fields(payload, data)
            raise status_error(status, message, text_code, {}, self._deployment_id, time.time)
        return stream_chunk(payload, self._deployment_id, delivered=delivered)


def upstream_model(deployment: Deployment) -> str:
    """The model name the upstream knows: litellm's string without its provider prefix."""
    prefix = f"{deployment.provider}/"
    return deployment.model.removeprefix(prefix)


def answer(content: bytes, headers: dict[str, str], deployment_id: str) -> ProviderResponse:
    """A 200's body as a response; anything that is not a chat completion is `malformed`."""
    if len(content) > MAX_ANSWER_BYTES:
        raise malformed(deployment_id, f"an answer over {MAX_ANSWER_BYTES} bytes")
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        sample = content[:_SAMPLE_BYTES].decode("utf-8", "replace")
        raise malformed(deployment_id, "not JSON", detail=sample) from None
    try:
        return parse_response(data, headers)
    except MalformedAnswer as exc:
        raise malformed(deployment_id, str(exc)) from None
    except Exception as exc:  # no parser failure leaves the provider layer bare
        raise malformed(deployment_id, "unreadable", detail=type(exc).__name__) from None


def transport_error(exc: BaseException, deployment_id: str, timeout_s: float) -> ProviderError:
    """A failure below HTTP: no answer in time, or no usable connection.

    The socket's or parser's text can quote what the server sent (a header,
    an encoding): it goes to the log as detail, never into the message.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, TimeoutError):
        return upstream_failure(
            UpstreamTimeout, deployment_id, reason=f"no answer within {timeout_s:g}s"
        )
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, HttpError | OSError):
        return upstream_failure(
            UpstreamUnavailable, deployment_id, reason=_transport_reason(exc), detail=detail
        )
    return upstream_failure(UpstreamInternal, deployment_id, reason="unexpected", detail=detail)


def _transport_reason(exc: HttpError | OSError) -> str:
    """Our words for a transport failure (HttpError wraps the OS error of a connect)."""
    cause = exc.__cause__ if isinstance(exc, HttpError) and exc.__cause__ is not None else exc
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    if isinstance(cause, HttpError):
        return "bad HTTP answer or connection lost"
    return "connection error"
