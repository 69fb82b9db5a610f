"""Every provider through litellm, one call at a time.

litellm is imported here and nowhere else, once, when the composition root
builds this adapter. Everything a call needs (key, base URL, timeout) is
passed per call: no `litellm.*` globals and no litellm Router, because
retries, fallbacks and routing belong to `routing/` and the gateway.

litellm's exceptions are mapped into Switchboard's error tree in
`classify()`, the one place that knows both. Their text is the provider's
(it can quote our key or organization): it goes to the log redacted, and
the errors carry our own description (`openai_wire.describe`). litellm's
own banners and log records on each failure are turned off at import.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

# Must be set before litellm is imported: otherwise litellm fetches its
# model cost map from the internet at import time, and the first Anthropic
# structured-output call fetches its beta-headers config (a blocking httpx.get
# on the event loop). Its bundled copies serve.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")

import httpx
import litellm
import openai
import pydantic
from litellm.exceptions import (
    ContentPolicyViolationError,
    ContextWindowExceededError,
)
from litellm.llms.base_llm.chat.transformation import BaseLLMException

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
    MalformedAnswer,
    first_line,
    malformed,
    parse_response,
    request_fields,
    require_answer,
    status_error,
    stream_chunk,
    upstream_failure,
)
from switchboard.providers.prices import PriceTable
from switchboard.providers.tokens import PromptEstimator

log = logging.getLogger(__name__)

# litellm's loggers: they repeat the provider's text on failures.
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


def _quiet_litellm() -> None:
    """No banners on stdout, no provider text in litellm's own log records, no downloads.

    litellm prints "Give Feedback / Get Help" lines on every provider error
    unless `suppress_debug_info` is set; the provider's words reach our log
    only through `openai_wire.upstream_failure`, redacted.
    """
    litellm.suppress_debug_info = True
    # Counting a stream's tokens for a llama-3 model, litellm would fetch a tokenizer
    # from huggingface.co, retrying with blocking sleeps on the event loop (about 23 s
    # offline): its bundled tokenizers are enough for us.
    litellm.disable_hf_tokenizer_download = True
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


_quiet_litellm()


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
        # Per deployment: the OpenAI parameters litellm says its provider takes.
        self._supported: dict[str, frozenset[str] | None] = {}

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        return self._estimator.prompt_tokens(request)

    def dropped_params(self, deployment: Deployment, request: CompletionRequest) -> tuple[str, ...]:
        """The options set that litellm says the provider does not take (as drop_params)."""
        asked = request.options.openai()
        if not asked:
            return ()
        supported = self._supported_params(deployment)
        if supported is None:
            return ()  # litellm does not know: send them, the provider decides
        return tuple(name for name in asked if name not in supported)

    def _supported_params(self, deployment: Deployment) -> frozenset[str] | None:
        if deployment.id not in self._supported:
            try:
                model, provider, _, _ = litellm.get_llm_provider(
                    deployment.model, api_base=deployment.params.get("api_base")
                )
                names = litellm.get_supported_openai_params(
                    model=model, custom_llm_provider=provider
                )
            except Exception:  # litellm's lookup failing must not fail a call
                names = None
            self._supported[deployment.id] = frozenset(names) if names else None
        return self._supported[deployment.id]

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
            raise classify(exc, deployment.id, self._wall_clock) from None
        return _response(raw, deployment.id)

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> _LitellmStream:
        kwargs = self._call_args(deployment, request, timeout_s, stream=True)
        try:
            async with asyncio.timeout(timeout_s):
                raw = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise classify(exc, deployment.id, self._wall_clock) from None
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
        for name in self.dropped_params(deployment, request):
            del kwargs[name]
        return kwargs


class _LitellmStream:
    """Iterates litellm's stream as domain chunks; closes the upstream on `aclose()`."""

    def __init__(self, raw: Any, deployment_id: str, wall_clock: Callable[[], float]):
        self._raw = raw
        self._deployment_id = deployment_id
        self._wall_clock = wall_clock

    def __aiter__(self) -> AsyncIterator[ProviderChunk]:
        return require_answer(self._chunks(), self._deployment_id)

    async def _chunks(self) -> AsyncIterator[ProviderChunk]:
        seen = False
        try:
            async for raw in self._raw:
                chunk = stream_chunk(raw, self._deployment_id, delivered=seen)
                if chunk is not None:
                    seen = seen or bool(chunk.content or chunk.tool_calls)
                    yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            if seen and _unreadable_usage(exc):
                # litellm reads a stream's usage at its end: the text stands, the count is ours.
                log.warning(
                    "deployment %s streamed unreadable usage after its answer; "
                    "its chunks are counted instead",
                    self._deployment_id,
                )
                return
            raise classify(exc, self._deployment_id, self._wall_clock) from None

    async def aclose(self) -> None:
        await self._raw.aclose()


def classify(
    exc: BaseException, deployment_id: str, wall_clock: Callable[[], float]
) -> ProviderError:
    """Map a litellm/openai/httpx exception into Switchboard's error tree.

    The status is the upstream's own, read from the exception chain
    (`_upstream_answer`): litellm's mapped class can be decided by the
    provider's wording (a 500 or a 200 HTML page that mentions "rate limit"
    becomes its RateLimitError), and the provider's wording is untrusted.
    litellm's verdicts on context windows and content policy still count
    (it recognises every provider's wording) when the upstream's status
    agrees that the request was refused. Then any HTTP status goes through
    the table the fast path uses too (`openai_wire.status_error`); then
    timeouts and connection failures; what is left is an answer litellm
    could not read: malformed, a retryable `UpstreamUnavailable`, as on the
    fast path.
    """
    if isinstance(exc, ProviderError):
        return exc
    message = _short(exc)
    upstream = _upstream_answer(exc)
    status = upstream[0] if upstream is not None else None
    code = _code(upstream[2] if upstream is not None else exc)
    refused = status is None or status in _REFUSAL_STATUSES
    if isinstance(exc, ContextWindowExceededError) and refused:
        return upstream_failure(
            ContextWindowExceeded, deployment_id, status=status, code=code, detail=message
        )
    if isinstance(exc, ContentPolicyViolationError) and refused:
        return upstream_failure(
            ContentPolicyViolation, deployment_id, status=status, code=code, detail=message
        )
    if upstream is not None:
        status_code, headers, _ = upstream
        return status_error(status_code, message, code, headers, deployment_id, wall_clock)
    chain = _chain(exc)
    if any(
        isinstance(e, openai.APITimeoutError | TimeoutError | httpx.TimeoutException) for e in chain
    ):
        return upstream_failure(
            UpstreamTimeout, deployment_id, reason="no answer in time", detail=message
        )
    if any(_is_connection_error(e) for e in chain):
        return upstream_failure(
            UpstreamUnavailable, deployment_id, reason="connection error", detail=message
        )
    if _from_litellm(exc) or isinstance(exc, _PARSE_ERRORS):
        # No HTTP error and no broken connection: litellm could not read the answer.
        return malformed(deployment_id, "unreadable", status=None, detail=message)
    return upstream_failure(
        UpstreamInternal, deployment_id, reason=type(exc).__name__, detail=message
    )


# What reading a broken answer raises (pydantic's ValidationError is a ValueError).
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    StopAsyncIteration,
)
# Statuses with which a provider refuses a request (as opposed to failing it).
_REFUSAL_STATUSES = frozenset({400, 403, 413, 422})
# How deep to look for the upstream's own answer among chained exceptions.
_MAX_CHAIN = 8


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < _MAX_CHAIN and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _upstream_answer(
    exc: BaseException,
) -> tuple[int, Mapping[str, str], BaseException] | None:
    """The upstream's real HTTP error status, headers and the exception that holds them.

    Found on httpx's and the openai SDK's own errors, and on litellm's
    provider errors that carry the answer's headers (a status litellm made
    up, for an answer it could not read, carries none).
    """
    for candidate in _chain(exc):
        status: object = None
        headers: object = None
        if isinstance(candidate, httpx.HTTPStatusError):
            status, headers = candidate.response.status_code, candidate.response.headers
        elif isinstance(candidate, openai.APIStatusError) and not _from_litellm(candidate):
            status, headers = candidate.status_code, candidate.response.headers
        elif (
            isinstance(candidate, BaseLLMException)
            and candidate.headers
            and not getattr(candidate, "status_code_is_synthesized", False)
        ):
            status, headers = candidate.status_code, candidate.headers
        if isinstance(status, int) and 400 <= status < 600:
            readable = dict(headers) if isinstance(headers, Mapping | httpx.Headers) else {}
            return status, readable, candidate
    return None


def _unreadable_usage(exc: BaseException) -> bool:
    """Whether litellm failed on the usage block (pydantic refusing its `Usage` model)."""
    return any(isinstance(e, pydantic.ValidationError) and e.title == "Usage" for e in _chain(exc))


def _from_litellm(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] == "litellm"


def _is_connection_error(exc: BaseException) -> bool:
    """A connection that failed, as httpx, the openai SDK or the OS said (not litellm)."""
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return True
    return isinstance(exc, openai.APIConnectionError) and not _from_litellm(exc)


def _code(exc: BaseException) -> str | None:
    """OpenAI's machine-readable error code; litellm's text matching misses some.

    The body's code comes first: litellm sets `exc.code` to the HTTP status
    on some errors, which is no code.
    """
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        nested = body.get("error", body)
        if isinstance(nested, Mapping) and isinstance(nested.get("code"), str):
            return str(nested["code"])
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and not code.isdigit() else None


def _headers(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        return dict(headers)
    explicit = getattr(exc, "headers", None)
    return dict(explicit) if isinstance(explicit, Mapping) else {}


def _short(exc: BaseException) -> str:
    """One line of the provider's message, without litellm's help banners (for the log)."""
    try:
        return first_line(str(getattr(exc, "message", "") or exc)) or type(exc).__name__
    except Exception:  # a str() that fails is no reason to lose the error
        return type(exc).__name__


def _response(raw: Any, deployment_id: str) -> ProviderResponse:
    """litellm's answer as a domain response; anything unreadable is `malformed`."""
    try:
        hidden = getattr(raw, "_hidden_params", None)
        headers = hidden.get("additional_headers") if isinstance(hidden, Mapping) else None
        return parse_response(raw, headers if isinstance(headers, Mapping) else None)
    except MalformedAnswer as exc:
        raise malformed(deployment_id, str(exc)) from None
    except Exception as exc:  # no parser failure leaves the provider layer bare
        raise malformed(deployment_id, "unreadable", detail=type(exc).__name__) from None
