"""Wire shapes: the fast chunk encoder writes exactly what the plain builders describe."""

from __future__ import annotations

import json

import pytest

from switchboard.sim import wire

META = wire.ResponseMeta(id="chatcmpl-abc", created=1700000000, model="fast")


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    ("delta", "finish_reason"),
    [
        ({"role": "assistant", "content": "", "refusal": None}, None),
        ({"content": ' "quoted" ünïcode\n'}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"'}}]}, None),
        ({}, "length"),
    ],
)
def test_encoder_matches_the_plain_chunk(
    delta: wire.JsonObject, finish_reason: str | None, include_usage: bool
) -> None:
    encoded = wire.ChunkEncoder(META, include_usage=include_usage).encode(delta, finish_reason)
    expected = wire.chunk(META, delta, finish_reason, include_usage=include_usage)
    assert encoded == wire.sse(expected)
    assert encoded.startswith(b"data: ")
    assert encoded.endswith(b"\n\n")
    assert json.loads(encoded[len(b"data: ") :]) == expected


def test_usage_adds_up() -> None:
    usage = wire.usage(10, 5)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        10,
        5,
        15,
    )


def test_errors_have_openais_four_fields() -> None:
    assert wire.error("boom", "server_error") == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": None}
    }
