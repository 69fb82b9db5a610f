"""OpenAI's error replies, with OpenAI's status codes, wording and headers.

Clients classify errors by these exact details: litellm recognises a context-window
error by "maximum context length", the OpenAI client waits `retry-after-ms`, the
gateway reads `code`. Keeping every reply here, as pure values, lets tests compare
them with OpenAI's documentation without an HTTP round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import wire

ORGANIZATION = "org-sim"
RATE_LIMIT_DOCS = "Visit https://platform.openai.com/account/rate-limits to learn more."


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: wire.JsonObject
    headers: dict[str, str] = field(default_factory=dict)


def duration(seconds: float) -> str:
    """OpenAI's short duration format: `250ms`, `1.5s`, `40s`."""
    if seconds < 1:
        return f"{math.ceil(round(seconds * 1000, 3))}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Retry-After in whole seconds (HTTP) and exact milliseconds (OpenAI's own header)."""
    # Rounding first keeps float noise (0.0010000002 s) from adding a whole unit.
    return {
        "retry-after": str(math.ceil(round(seconds, 6))),
        "retry-after-ms": str(math.ceil(round(seconds * 1000, 3))),
    }


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ErrorReply:
    return ErrorReply(400, wire.error(message, "invalid_request_error", param, code))


def rate_limited(model: str, retry_after_s: float) -> ErrorReply:
    return ErrorReply(
        429,
        wire.error(
            f"Rate limit reached for {model} in organization {ORGANIZATION} on requests per "
            f"min (RPM). Please try again in {duration(retry_after_s)}. {RATE_LIMIT_DOCS}",
            "requests",
            None,
            "rate_limit_exceeded",
        ),
        retry_after_headers(retry_after_s),
    )


def tokens_rate_limited(
    model: str, limit: int, used: int, requested: int, retry_after_s: float
) -> ErrorReply:
    return ErrorReply(
        429,
        wire.error(
            f"Rate limit reached for {model} in organization {ORGANIZATION} on tokens per min "
            f"(TPM): Limit {limit}, Used {used}, Requested {requested}. Please try again in "
            f"{duration(retry_after_s)}. {RATE_LIMIT_DOCS}",
            "tokens",
            None,
            "rate_limit_exceeded",
        ),
        retry_after_headers(retry_after_s),
    )


def requests_rate_limited(model: str, limit: int, retry_after_s: float) -> ErrorReply:
    return ErrorReply(
        429,
        wire.error(
            f"Rate limit reached for {model} in organization {ORGANIZATION} on requests per min "
            f"(RPM): Limit {limit}, Used {limit}, Requested 1. Please try again in "
            f"{duration(retry_after_s)}. {RATE_LIMIT_DOCS}",
            "requests",
            None,
            "rate_limit_exceeded",
        ),
        retry_after_headers(retry_after_s),
    )


def request_too_large(model: str, limit: int, requested: int) -> ErrorReply:
    """A request bigger than the whole TPM budget: no Retry-After, it never fits."""
    return ErrorReply(
        429,
        wire.error(
            f"Request too large for {model} in organization {ORGANIZATION} on tokens per min "
            f"(TPM): Limit {limit}, Requested {requested}. The input or output tokens must be "
            f"reduced in order to run successfully. {RATE_LIMIT_DOCS}",
            "tokens",
            None,
            "rate_limit_exceeded",
        ),
    )


def invalid_api_key() -> ErrorReply:
    return ErrorReply(
        401,
        wire.error(
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            "invalid_api_key",
        ),
    )


def server_error() -> ErrorReply:
    return ErrorReply(
        500,
        wire.error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        ),
    )


def unavailable() -> ErrorReply:
    return ErrorReply(
        503,
        wire.error("The engine is currently overloaded, please try again later.", "server_error"),
    )


def gateway_timeout() -> ErrorReply:
    return ErrorReply(504, wire.error("Gateway timeout.", "server_error", None, "timeout"))


def context_length_exceeded(
    limit: int, prompt_tokens: int, completion_tokens: int | None = None
) -> ErrorReply:
    """OpenAI's two wordings: the messages alone, or messages plus requested completion."""
    if completion_tokens is None:
        message = (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        )
    else:
        message = (
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, "
            f"{completion_tokens} in the completion). Please reduce the length of the "
            "messages or completion."
        )
    return invalid_request(message, "messages", "context_length_exceeded")


def content_policy_violation() -> ErrorReply:
    return invalid_request(
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        "prompt",
        "content_policy_violation",
    )


def not_found(method: str, path: str) -> ErrorReply:
    return ErrorReply(404, wire.error(f"Invalid URL ({method} {path})", "invalid_request_error"))
