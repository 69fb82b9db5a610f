"""OpenAI chat-completions wire shapes: completion, chunk, usage, error, SSE framing.

Pure functions from values to JSON-ready dicts, so the exact bytes clients parse are
decided in one place and can be compared field by field with OpenAI's documentation.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass

SYSTEM_FINGERPRINT = "fp_sim"
ID_ALPHABET = string.ascii_letters + string.digits
SSE_DONE = b"data: [DONE]\n\n"

JsonObject = dict[str, object]


def random_id(prefix: str, rng: random.Random, length: int = 29) -> str:
    return prefix + "".join(rng.choice(ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every completion and chunk of one response repeats."""

    id: str
    created: int
    model: str


def usage(prompt_tokens: int, completion_tokens: int) -> JsonObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def tool_call_json(call_id: str, name: str, arguments: str) -> JsonObject:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion(
    meta: ResponseMeta,
    message: JsonObject,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> JsonObject:
    """A non-streamed `chat.completion` object with one choice."""
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [choice(0, message, finish_reason)],
        "usage": usage(prompt_tokens, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def choice(index: int, message: JsonObject, finish_reason: str) -> JsonObject:
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def text_message(content: str) -> JsonObject:
    return {"role": "assistant", "content": content, "refusal": None, "annotations": []}


def tool_calls_message(calls: list[JsonObject]) -> JsonObject:
    return {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "tool_calls": calls,
    }


def chunk(
    meta: ResponseMeta,
    delta: JsonObject,
    finish_reason: str | None = None,
    *,
    include_usage: bool = False,
) -> JsonObject:
    """One `chat.completion.chunk`; with include_usage OpenAI adds `usage: null` to each."""
    body: JsonObject = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        body["usage"] = None
    return body


def usage_chunk(meta: ResponseMeta, prompt_tokens: int, completion_tokens: int) -> JsonObject:
    """The final chunk `stream_options.include_usage` asks for: no choices, only usage."""
    return {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


class ChunkEncoder:
    """Encodes the SSE events of one stream, serialising the repeated envelope once.

    Produces exactly `sse(chunk(meta, delta, finish_reason, include_usage=...))`; only
    the delta and finish reason are serialised per token, which keeps the simulator
    cheap enough to be the baseline in overhead benchmarks.
    """

    def __init__(self, meta: ResponseMeta, *, include_usage: bool) -> None:
        empty = dumps(chunk(meta, {}, None, include_usage=include_usage))
        marker = '"delta":{}'
        cut = empty.index(marker) + len('"delta":')
        self._prefix = ("data: " + empty[:cut]).encode()
        rest = empty[cut + 2 :]
        finish_marker = '"finish_reason":null'
        finish_at = rest.index(finish_marker) + len('"finish_reason":')
        self._middle = rest[:finish_at].encode()
        self._suffix = (rest[finish_at + len("null") :] + "\n\n").encode()

    def encode(self, delta: JsonObject, finish_reason: str | None = None) -> bytes:
        return b"".join(
            (
                self._prefix,
                dumps(delta).encode(),
                self._middle,
                json.dumps(finish_reason).encode(),
                self._suffix,
            )
        )


def error(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> JsonObject:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def dumps(body: JsonObject) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def sse(body: JsonObject) -> bytes:
    return f"data: {dumps(body)}\n\n".encode()
