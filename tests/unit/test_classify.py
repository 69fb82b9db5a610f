"""Lower-layer exceptions map into Switchboard's error tree in one place."""

from __future__ import annotations

import logging

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


SECRET = "Rate limit reached for organization org-AbCdEf123 (sk-abc...wxyz)"


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` as litellm raises it: while handling `inner`."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is what litellm leaves
    except BaseException as caught:
        return caught


def test_the_upstreams_own_status_wins_over_litellms_reading_of_its_words() -> None:
    # litellm maps a 500 whose text says "rate limit" to its RateLimitError.
    real = _status_error(openai.InternalServerError, 500, body={"message": SECRET})
    mapped_by_words = litellm.RateLimitError(SECRET, llm_provider="openai", model="m")
    mapped = classify(_raised_from(mapped_by_words, real), "dep-1", _clock)
    assert type(mapped) is errors.UpstreamUnavailable
    assert mapped.message == "deployment dep-1 is unavailable (HTTP 500)"
    assert mapped.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_the_callers_see_our_words_and_the_log_sees_redacted_ones(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    exc = _status_error(
        openai.APIStatusError, status, body={"message": SECRET, "code": "org-AbCdEf123"}
    )
    exc.message = SECRET
    caplog.set_level(logging.INFO)
    mapped = classify(exc, "dep-1", _clock)
    for shown in (mapped.message, str(mapped), *mapped.info().values()):
        assert "org-" not in shown
        assert "sk-" not in shown
        assert "Rate limit" not in shown
    assert "dep-1 " in mapped.message
    assert f"(HTTP {status})" in mapped.message  # the code was an org id: not shown
    assert "<org>" in mapped.upstream_detail
    assert "<key>" in mapped.upstream_detail
    logged = caplog.text
    assert "Rate limit reached for organization <org> (<key>)" in logged
    assert "AbCdEf123" not in logged
    assert "wxyz" not in logged


@pytest.mark.parametrize(
    "exc",
    [
        litellm.APIError(500, "Invalid response object", llm_provider="openai", model="m"),
        litellm.InternalServerError("Expecting value", llm_provider="openai", model="m"),
        ValueError("1 validation error for Usage"),
        OverflowError("cannot convert float infinity to integer"),
        KeyError("choices"),
    ],
    ids=["api-error", "internal", "validation", "overflow", "key"],
)
def test_an_answer_litellm_could_not_read_is_malformed_and_retryable(exc: Exception) -> None:
    mapped = classify(exc, "dep-1", _clock)
    assert type(mapped) is errors.UpstreamUnavailable
    assert mapped.retryable
    assert mapped.message == "deployment dep-1 sent a malformed answer (unreadable)"


async def test_a_failed_litellm_call_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    from aiohttp import web

    from switchboard.config import Deployment
    from switchboard.domain import CompletionRequest, Message, Role
    from switchboard.providers.litellm_adapter import LitellmProvider

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": SECRET, "code": None}}, status=429)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    dep = Deployment(
        id="dep-1", model_group="g", model="openai/m", provider="openai",
        params={"api_base": f"http://127.0.0.1:{port}/v1", "api_key": "k"},
        rpm=None, tpm=None, timeout_s=5, stream_timeout_s=5, weight=None,
        max_input_tokens=None, max_output_tokens=None,
        input_cost_per_token=None, output_cost_per_token=None,
    )  # fmt: skip
    request = CompletionRequest(model="g", messages=(Message(Role.USER, "hi"),))
    provider = LitellmProvider()
    capfd.readouterr()
    try:
        with pytest.raises(errors.UpstreamRateLimited):
            await provider.complete(dep, request, timeout_s=5)
        with pytest.raises(errors.UpstreamRateLimited):
            await provider.stream(dep, request, timeout_s=5)
    finally:
        await runner.cleanup()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
