"""Request parsing: what OpenAI accepts is parsed; what it rejects fails with its param."""

from __future__ import annotations

import pytest

from switchboard.sim.chat import ChatMessage, ToolChoiceMode
from switchboard.sim.request import InvalidRequest, parse_chat_request

USER = {"role": "user", "content": "hello"}


def test_a_full_request_is_parsed() -> None:
    chat = parse_chat_request(
        {
            "model": "fast",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "max_completion_tokens": 9,
            "max_tokens": 100,
            "temperature": 0.2,
            "top_p": 1,
            "stop": "END",
            "seed": 7,
            "n": 1,
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "user": "ignored",
            "response_format": {"type": "text"},
        }
    )
    assert chat.messages[1] == ChatMessage(role="user", content="a")
    assert chat.messages[2].tool_calls[0].name == "f"
    assert chat.messages[3].tool_call_id == "c1"
    assert chat.max_tokens == 9
    assert chat.stop == ("END",)
    assert chat.seed == 7
    assert chat.stream
    assert chat.include_usage
    assert chat.tool_choice is ToolChoiceMode.FUNCTION
    assert chat.forced_tool() is chat.tools[0]


def test_include_usage_only_applies_to_streams() -> None:
    chat = parse_chat_request(
        {"model": "m", "messages": [USER], "stream_options": {"include_usage": True}}
    )
    assert not chat.include_usage


def test_auto_tool_choice_answers_with_text() -> None:
    chat = parse_chat_request(
        {
            "model": "m",
            "messages": [USER],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        }
    )
    assert chat.forced_tool() is None
    required = parse_chat_request(
        {
            "model": "m",
            "messages": [USER],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required",
        }
    )
    assert required.forced_tool() is not None


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ([], None, None),
        ({"messages": [USER]}, "model", "missing_required_parameter"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "empty_array"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        (
            {"model": "m", "messages": [{"content": "x"}]},
            "messages[0].role",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user"}]},
            "messages[0].content",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        ({"model": "m", "messages": [USER], "n": 9}, "n", "invalid_value"),
        ({"model": "m", "messages": [USER], "max_tokens": "10"}, "max_tokens", "invalid_type"),
        ({"model": "m", "messages": [USER], "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"model": "m", "messages": [USER], "max_tokens": True}, "max_tokens", "invalid_type"),
        ({"model": "m", "messages": [USER], "temperature": 3}, "temperature", "invalid_value"),
        ({"model": "m", "messages": [USER], "stream": "yes"}, "stream", "invalid_type"),
        (
            {"model": "m", "messages": [USER], "stop": ["a", "b", "c", "d", "e"]},
            "stop",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [USER], "tool_choice": "required"},
            "tool_choice",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [USER], "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
            "invalid_type",
        ),
    ],
)
def test_invalid_requests_name_the_param(body: object, param: str | None, code: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(body)
    assert caught.value.param == param
    assert caught.value.code == code


def test_response_format_is_parsed_and_checked() -> None:
    base = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    assert parse_chat_request(base).response_format == "text"
    mode = parse_chat_request({**base, "response_format": {"type": "json_object"}})
    assert (mode.response_format, mode.response_schema) == ("json_object", None)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    spec = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    parsed = parse_chat_request({**base, "response_format": spec})
    assert (parsed.response_format, parsed.response_schema) == ("json_schema", schema)
    for bad, param in (
        ({"type": "yaml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"schema": {}}},
            "response_format.json_schema.name",
        ),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_chat_request({**base, "response_format": bad})
        assert caught.value.param == param


def test_n_answers_are_bounded_and_never_streamed() -> None:
    base = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    assert parse_chat_request({**base, "n": 3}).n == 3
    assert parse_chat_request(base).n == 1
    for body in ({**base, "n": 9}, {**base, "n": 2, "stream": True}):
        with pytest.raises(InvalidRequest) as caught:
            parse_chat_request(body)
        assert caught.value.param == "n"
