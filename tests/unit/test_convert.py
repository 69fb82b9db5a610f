"""Validation at the edge: every bad field is named, good requests convert losslessly."""

from __future__ import annotations

import math

import pytest
from google.protobuf import struct_pb2

from switchboard.api import convert
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.domain import Role
from switchboard.errors import InvalidRequest


def _request(**fields: object) -> pb.CompleteRequest:
    base: dict[str, object] = {
        "model": "chat",
        "messages": [pb.Message(role=pb.ROLE_USER, content="hi")],
    }
    base.update(fields)
    return pb.CompleteRequest(**base)  # type: ignore[arg-type]


def _fields(request: pb.CompleteRequest) -> set[str]:
    with pytest.raises(InvalidRequest) as caught:
        convert.request_from_proto(request)
    return {v.field for v in caught.value.violations}


def test_a_good_request_converts() -> None:
    params = struct_pb2.Struct()
    params.update({"type": "object", "properties": {"city": {"type": "string"}}})
    request = _request(
        max_tokens=64,
        temperature=0.5,
        stop=["\n"],
        seed=7,
        tools=[pb.Tool(name="weather", parameters=params)],
        tool_choice="weather",
        metadata={"team": "search"},
    )
    domain = convert.request_from_proto(request)
    assert domain.model == "chat"
    assert domain.messages[0].role is Role.USER
    assert domain.sampling.max_tokens == 64
    assert domain.sampling.temperature == 0.5
    assert domain.sampling.top_p is None
    assert domain.sampling.seed == 7
    assert domain.tools[0].parameters["properties"] == {"city": {"type": "string"}}
    assert domain.metadata == {"team": "search"}


def test_empty_messages_and_model_are_both_named() -> None:
    assert _fields(pb.CompleteRequest()) == {"model", "messages"}


def test_unspecified_role_names_the_message() -> None:
    request = _request(messages=[pb.Message(role=pb.ROLE_USER, content="a"), pb.Message()])
    assert _fields(request) == {"messages[1].role"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("temperature", math.nan),
        ("top_p", 1.5),
        ("presence_penalty", 3.0),
        ("frequency_penalty", -math.inf),
        ("max_tokens", 0),
        ("max_tokens", 10_000_000),
    ],
)
def test_out_of_range_sampling_is_named(field: str, value: float) -> None:
    assert _fields(_request(**{field: value})) == {field}


def test_tool_problems_are_named() -> None:
    request = _request(
        tools=[pb.Tool(name="ok"), pb.Tool(name="ok"), pb.Tool(name="has space")],
        tool_choice="missing",
        messages=[pb.Message(role=pb.ROLE_TOOL, content="42")],
    )
    assert _fields(request) == {
        "tools[1].name",
        "tools[2].name",
        "tool_choice",
        "messages[0].tool_call_id",
    }


def test_too_many_and_empty_stop_sequences() -> None:
    assert _fields(_request(stop=["a", "b", "c", "d", "e"])) == {"stop"}
    assert _fields(_request(stop=[""])) == {"stop[0]"}
