"""The edge's limits and turn order: each hostile shape is refused, naming its field."""

from __future__ import annotations

import math

import pytest
from google.protobuf import struct_pb2

from switchboard.api import convert
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.errors import InvalidRequest

U, A, T, S = pb.ROLE_USER, pb.ROLE_ASSISTANT, pb.ROLE_TOOL, pb.ROLE_SYSTEM


def _call(call_id: str, arguments: str = "{}") -> pb.ToolCall:
    return pb.ToolCall(id=call_id, name="lookup", arguments=arguments)


def _fields(request: pb.CompleteRequest) -> set[str]:
    with pytest.raises(InvalidRequest) as caught:
        convert.request_from_proto(request)
    return {v.field for v in caught.value.violations}


def _request(*messages: pb.Message, **fields: object) -> pb.CompleteRequest:
    base: dict[str, object] = {
        "model": "chat",
        "messages": list(messages) or [pb.Message(role=U, content="hi")],
    }
    return pb.CompleteRequest(**(base | fields))  # type: ignore[arg-type]


def test_a_tool_round_trip_in_order_is_accepted() -> None:
    request = _request(
        pb.Message(role=S, content="be brief"),
        pb.Message(role=U, content="weather?"),
        pb.Message(role=A, tool_calls=[_call("c1"), _call("c2", "")]),
        pb.Message(role=T, tool_call_id="c2", content="rain"),
        pb.Message(role=T, tool_call_id="c1", content="sun"),
        pb.Message(role=A, content="mixed"),
        pb.Message(role=U, content="thanks"),
    )
    assert len(convert.request_from_proto(request).messages) == 7


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([pb.Message(role=T, tool_call_id="c1", content="x")], {"messages[0].tool_call_id"}),
        (
            [pb.Message(role=U, content="q"), pb.Message(role=A, tool_calls=[_call("c1")])],
            {"messages[1].tool_calls[0].id"},
        ),
        (
            [
                pb.Message(role=U, content="q"),
                pb.Message(role=A, tool_calls=[_call("c1")]),
                pb.Message(role=U, content="again"),
                pb.Message(role=T, tool_call_id="c1", content="late"),
            ],
            {"messages[1].tool_calls[0].id", "messages[3].tool_call_id"},
        ),
        (
            [
                pb.Message(role=U, content="q"),
                pb.Message(role=A, tool_calls=[_call("c1")]),
                pb.Message(role=T, tool_call_id="c1", content="a"),
                pb.Message(role=T, tool_call_id="c1", content="again"),
            ],
            {"messages[3].tool_call_id"},
        ),
        (
            [
                pb.Message(role=U, content="q"),
                pb.Message(role=A, tool_calls=[_call("c1"), _call("c1")]),
                pb.Message(role=T, tool_call_id="c1", content="a"),
            ],
            {"messages[1].tool_calls[1].id"},
        ),
        (
            [pb.Message(role=U, content="q"), pb.Message(role=A, tool_calls=[_call("")])],
            {"messages[1].tool_calls[0].id"},
        ),
        ([pb.Message(role=S, content="a"), pb.Message(role=S, content="b")], {"messages"}),
        ([pb.Message(role=U, content="")], {"messages[0].content"}),
        ([pb.Message(role=U, content="q"), pb.Message(role=A)], {"messages[1].content"}),
    ],
)
def test_turns_out_of_order_are_named(messages: list[pb.Message], expected: set[str]) -> None:
    assert _fields(_request(*messages)) == expected


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", "[" * 100_000])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    request = _request(
        pb.Message(role=U, content="q"),
        pb.Message(role=A, tool_calls=[_call("c1", arguments)]),
        pb.Message(role=T, tool_call_id="c1", content="a"),
    )
    assert _fields(request) == {"messages[1].tool_calls[0].arguments"}


def _tool(schema: dict[str, object]) -> pb.Tool:
    parameters = struct_pb2.Struct()
    parameters.update(schema)  # type: ignore[arg-type]
    return pb.Tool(name="lookup", parameters=parameters)


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": "string"}, "tools[0].parameters.type"),
        ({"properties": {}}, "tools[0].parameters.type"),
        ({"type": "object", "properties": {"a": 1}}, "tools[0].parameters.properties"),
        ({"type": "object", "properties": ["a"]}, "tools[0].parameters.properties"),
        ({"type": "object", "required": "a"}, "tools[0].parameters.required"),
        ({"type": "object", "required": [1]}, "tools[0].parameters.required"),
        # Once an INTERNAL error: json_format cannot print NaN.
        ({"type": "object", "maximum": math.nan}, "tools[0].parameters"),
    ],
)
def test_tool_parameters_must_be_an_object_schema(schema: dict[str, object], field: str) -> None:
    assert _fields(_request(tools=[_tool(schema)])) == {field}


def test_count_limits_are_checked_before_the_elements() -> None:
    many = [pb.Message() for _ in range(convert.MAX_MESSAGES + 1)]
    # Every message is also invalid, but only the count is reported: nothing walked them.
    assert _fields(_request(*many)) == {"messages"}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tools": [pb.Tool(name=f"t{i}") for i in range(convert.MAX_TOOLS + 1)]}, "tools"),
        ({"metadata": {f"k{i}": "v" for i in range(convert.MAX_METADATA + 1)}}, "metadata"),
        ({"stop": ["s"] * (convert.MAX_STOP_SEQUENCES + 1)}, "stop"),
        ({"model": "m" * (convert.MAX_NAME_CHARS + 1)}, "model"),
        ({"stop": ["s" * (convert.MAX_STOP_CHARS + 1)]}, "stop[0]"),
        ({"metadata": {"k": "v" * (convert.MAX_METADATA_VALUE_CHARS + 1)}}, "metadata['k']"),
        ({"metadata": {"": "v"}}, "metadata['']"),
        ({"cache": pb.CacheControl(ttl_seconds=convert.MAX_CACHE_TTL_S + 1)}, "cache.ttl_seconds"),
    ],
)
def test_size_limits_name_their_field(fields: dict[str, object], expected: str) -> None:
    assert _fields(_request(**fields)) == {expected}


def test_too_many_tool_calls_in_one_message() -> None:
    calls = [_call(f"c{i}") for i in range(convert.MAX_TOOL_CALLS + 1)]
    request = _request(pb.Message(role=U, content="q"), pb.Message(role=A, tool_calls=calls))
    assert _fields(request) == {"messages[1].tool_calls"}


def test_the_prompt_character_limit_counts_every_message() -> None:
    half = "x" * (convert.MAX_PROMPT_CHARS // 2)
    fits = _request(
        pb.Message(role=U, content=half), pb.Message(role=A, content="ok"),
        pb.Message(role=U, content=half[:-10]),
    )  # fmt: skip
    convert.request_from_proto(fits)
    over = _request(
        pb.Message(role=U, content=half), pb.Message(role=A, content="ok"),
        pb.Message(role=U, content=half),
    )  # fmt: skip
    assert _fields(over) == {"messages"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x0a\x02\xff\xfe", "String field had bad UTF-8"),
        (b"\x0a\x05ab", "Wire format was corrupt"),
        (b"\x0b", "Wire format was corrupt"),
    ],
)
def test_undecodable_bytes_are_an_invalid_request(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        convert.decode(pb.CompleteRequest, payload)
    [violation] = caught.value.violations
    assert violation.field == "request"
    assert violation.description == f"not a valid switchboard.v1.CompleteRequest: {reason}"


def test_decode_parses_a_good_payload() -> None:
    data = _request().SerializeToString()
    assert convert.decode(pb.CompleteRequest, data) == _request()
