"""Lower-layer exceptions map into Switchboard's error tree in one place."""

from __future__ import annotations

import httpx
import litellm
import openai
import pytest

from switchboard import errors
from switchboard.providers.litellm_adapter import classify

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def _status_error(
    cls: type[openai.APIStatusError], status: int, body: object = None, headers: object = None
) -> openai.APIStatusError:
    response = httpx.Response(status, request=REQUEST, headers=headers or {})  # type: ignore[arg-type]
    return cls("upstream said no", response=response, body=body)


def _clock() -> float:
    return 0.0


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_status_error(openai.RateLimitError, 429), errors.UpstreamRateLimited),
        (_status_error(openai.InternalServerError, 500), errors.UpstreamUnavailable),
        (_status_error(openai.InternalServerError, 503), errors.UpstreamUnavailable),
        (_status_error(openai.AuthenticationError, 401), errors.UpstreamAuthError),
        (_status_error(openai.PermissionDeniedError, 403), errors.UpstreamAuthError),
        (_status_error(openai.NotFoundError, 404), errors.UpstreamNotFound),
        (_status_error(openai.BadRequestError, 400), errors.UpstreamBadRequest),
        (
            _status_error(openai.BadRequestError, 400, body={"code": "content_policy_violation"}),
            errors.ContentPolicyViolation,
        ),
        (
            _status_error(openai.BadRequestError, 400, body={"code": "context_length_exceeded"}),
            errors.ContextWindowExceeded,
        ),
        (
            litellm.ContextWindowExceededError("too long", model="m", llm_provider="openai"),
            errors.ContextWindowExceeded,
        ),
        (openai.APITimeoutError(request=REQUEST), errors.UpstreamTimeout),
        (TimeoutError(), errors.UpstreamTimeout),
        (openai.APIConnectionError(request=REQUEST), errors.UpstreamUnavailable),
        (httpx.ConnectError("refused"), errors.UpstreamUnavailable),
        (RuntimeError("surprise"), errors.UpstreamInternal),
    ],
)
def test_classify(exc: BaseException, expected: type[errors.ProviderError]) -> None:
    mapped = classify(exc, "dep-1", _clock)
    assert type(mapped) is expected
    assert mapped.deployment == "dep-1"
    assert "\n" not in mapped.message


def test_rate_limit_keeps_the_providers_wait() -> None:
    exc = _status_error(openai.RateLimitError, 429, headers={"retry-after-ms": "2500"})
    mapped = classify(exc, "dep-1", _clock)
    assert mapped.retry_after == 2.5
    assert mapped.retryable
