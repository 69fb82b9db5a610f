"""OpenAI's error replies: the statuses, codes, wording and headers clients key on."""

from __future__ import annotations

import pytest

from switchboard.sim import replies


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.25, "250ms"),
        (0.0010000002, "1ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (40.0, "40s"),
    ],
)
def test_durations_read_like_openais(seconds: float, text: str) -> None:
    assert replies.duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "header_s", "header_ms"),
    [
        (1.0, "1", "1000"),
        (2.5, "3", "2500"),
        (0.0010000002, "1", "1"),
        (50.0000000001, "50", "50000"),
    ],
)
def test_retry_after_headers_round_up_but_ignore_float_noise(
    seconds: float, header_s: str, header_ms: str
) -> None:
    assert replies.retry_after_headers(seconds) == {
        "retry-after": header_s,
        "retry-after-ms": header_ms,
    }


def test_rate_limit_replies() -> None:
    reply = replies.rate_limited("fast", 2.0)
    assert reply.status == 429
    assert reply.headers == {"retry-after": "2", "retry-after-ms": "2000"}
    assert reply.body["error"] == {
        "message": "Rate limit reached for fast in organization org-sim on requests per min "
        "(RPM). Please try again in 2s. Visit https://platform.openai.com/account/rate-limits "
        "to learn more.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    tpm = replies.tokens_rate_limited("fast", 100, 90, 20, 12.5)
    assert "on tokens per min (TPM): Limit 100, Used 90, Requested 20." in str(tpm.body)
    assert tpm.headers["retry-after-ms"] == "12500"
    too_large = replies.request_too_large("fast", 100, 120)
    assert too_large.status == 429
    assert too_large.headers == {}


def test_context_window_wordings() -> None:
    messages_only = replies.context_length_exceeded(4096, 5000)
    assert messages_only.status == 400
    assert messages_only.body["error"] == {
        "message": "This model's maximum context length is 4096 tokens. However, your messages "
        "resulted in 5000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    with_completion = replies.context_length_exceeded(4096, 4000, 200)
    assert "you requested 4200 tokens (4000 in the messages, 200 in the completion)" in str(
        with_completion.body
    )


@pytest.mark.parametrize(
    ("reply", "status", "error_type", "code"),
    [
        (replies.server_error(), 500, "server_error", None),
        (replies.unavailable(), 503, "server_error", None),
        (replies.gateway_timeout(), 504, "server_error", "timeout"),
        (
            replies.content_policy_violation(),
            400,
            "invalid_request_error",
            "content_policy_violation",
        ),
        (replies.not_found("POST", "/v1/x"), 404, "invalid_request_error", None),
    ],
)
def test_other_replies(
    reply: replies.ErrorReply, status: int, error_type: str, code: str | None
) -> None:
    assert reply.status == status
    error = reply.body["error"]
    assert isinstance(error, dict)
    assert (error["type"], error["code"]) == (error_type, code)
    assert error["message"]
