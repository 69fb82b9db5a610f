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
    ProviderChunk,
    ProviderResponse,
    Usage,
)
from switchboard.errors import (
    ContentPolicyViolation,
    ContextWindowExceeded,
    ProviderError,
    UpstreamInternal,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.providers.base import configured_price
from switchboard.providers.openai_wire import (
    first_line,
    parse_chunk,
    parse_response,
    request_fields,
    status_error,
)
from switchboard.providers.prices import PriceTable
from switchboard.providers.tokens import PromptEstimator


class LitellmProvider:
    """The `Provider` for every litellm model string."""

    def __init__(
        self,
        *,
        drop_params: bool = False,
        wall_clock: Callable[[], float] = time.time,
        estimator: PromptEstimator | None = None,
        prices: PriceTable | None = None,
    ):
        """`estimator` and `prices` are shared with the fast path by the composition root."""
        self._drop_params = drop_params
        self._wall_clock = wall_clock
        self._estimator = estimator or PromptEstimator.bundled()
        self._prices = prices or PriceTable.bundled()
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
        # The table the fast path prices by, then litellm's own rules for what it cannot.
        tabled = self._prices.price(deployment.model, usage)
        if tabled is not None:
            return tabled
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
                chunk = parse_chunk(raw)
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
    """Map a litellm/openai/httpx exception into Switchboard's error tree.

    litellm's own verdicts on context windows and content policy come first
    (it recognises every provider's wording); then any HTTP status goes
    through the table the fast path uses too (`openai_wire.status_error`);
    what is left failed below HTTP.
    """
    if isinstance(exc, ProviderError):
        return exc
    message = _short(exc)
    if isinstance(exc, ContextWindowExceededError):
        return ContextWindowExceeded(message, deployment=deployment_id)
    if isinstance(exc, ContentPolicyViolationError):
        return ContentPolicyViolation(message, deployment=deployment_id)
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx.TimeoutException):
        return UpstreamTimeout(
            message or "the provider did not answer in time", deployment=deployment_id
        )
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return status_error(status, message, _code(exc), _headers(exc), deployment_id, wall_clock)
    if isinstance(
        exc,
        openai.APIConnectionError
        | httpx.TransportError
        | ConnectionError
        | ServiceUnavailableError
        | InternalServerError,
    ):
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
    return first_line(str(getattr(exc, "message", "") or exc)) or type(exc).__name__


def _response(raw: Any) -> ProviderResponse:
    hidden = getattr(raw, "_hidden_params", None)
    headers = hidden.get("additional_headers") if isinstance(hidden, Mapping) else None
    return parse_response(raw, headers if isinstance(headers, Mapping) else None)
