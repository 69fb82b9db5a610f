"""Validation at the edge: every bad field is named, good requests convert losslessly."""

from __future__ import annotations

import math

import pytest
from google.protobuf import struct_pb2

from switchboard.api import convert
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.config import Deployment
from switchboard.domain import ImagePart, Role, TextPart
from switchboard.errors import InvalidRequest
from switchboard.gateway import DeploymentStatus
from switchboard.routing import HealthState, HealthView


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


def _status(until: float | None, **counts: object) -> DeploymentStatus:
    deployment = Deployment(
        id="d1", model_group="chat", model="openai/x", provider="openai", params={},
        rpm=counts.pop("rpm", 60), tpm=counts.pop("tpm", None), timeout_s=10.0,  # type: ignore[arg-type]
        stream_timeout_s=10.0, weight=None, max_input_tokens=None, max_output_tokens=None,
        input_cost_per_token=None, output_cost_per_token=None,
    )  # fmt: skip
    return DeploymentStatus(
        deployment=deployment,
        health=HealthView(HealthState.COOLING_DOWN, until, float(counts.pop("share", 0.0))),  # type: ignore[arg-type]
        in_flight=counts.pop("in_flight", 0),  # type: ignore[arg-type]
        requests_remaining=counts.pop("requests", None),  # type: ignore[arg-type]
        tokens_remaining=counts.pop("tokens", None),  # type: ignore[arg-type]
    )


# 9999-12-31T23:59:59Z, the last second a protobuf Timestamp holds.
LAST_TIMESTAMP_S = 253_402_300_799


@pytest.mark.parametrize(
    ("until", "seconds"),
    [
        (100.0, 1100),
        (math.inf, None),  # a Retry-After of inf: once an OverflowError in ListModels
        (-math.inf, None),
        (math.nan, None),
        (1e20, LAST_TIMESTAMP_S),  # once "Timestamp is not valid"
        (-1e20, 0),
        (None, None),
    ],
)
def test_a_cooldown_end_is_always_a_valid_timestamp(
    until: float | None, seconds: int | None
) -> None:
    message = convert.deployment_status(_status(until), wall_offset_s=1000.0)
    assert message.HasField("cooldown_until") is (seconds is not None)
    if seconds is not None:
        assert message.cooldown_until.seconds == seconds
    message.SerializeToString()  # what grpc does with it: must not raise either


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"requests": -5, "tokens": 2**70, "in_flight": 2**40, "share": math.nan},
         (0, 2**64 - 1, 2**32 - 1, 0.0)),
        ({"requests": 7, "tokens": None, "in_flight": -1, "share": math.inf}, (7, None, 0, 0.0)),
        ({"rpm": 2**80, "share": 2.5, "requests": math.inf}, (2**64 - 1, None, 0, 1.0)),
    ],
)  # fmt: skip
def test_deployment_counts_are_clamped_to_their_fields(
    counts: dict[str, object], expected: tuple[object, ...]
) -> None:
    message = convert.deployment_status(_status(None, **counts), wall_offset_s=0.0)
    requests = message.requests_remaining if message.HasField("requests_remaining") else None
    tokens = message.tokens_remaining if message.HasField("tokens_remaining") else None
    assert (requests, tokens, message.in_flight, message.traffic_share) == expected
    message.SerializeToString()


def _schema(value: dict[str, object]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def test_a_json_schema_response_format_converts() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = _request(
        response_format=pb.ResponseFormat(
            type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="count", schema=_schema(schema)
        ),
        validate_json=True,
    )
    domain = convert.request_from_proto(request)
    assert domain.response_format is not None
    assert domain.response_format.openai() == {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema},
    }
    assert domain.validate_json is True
    plain = convert.request_from_proto(_request())
    assert plain.response_format is None
    assert plain.validate_json is None
    text = _request(response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_TEXT))
    assert convert.request_from_proto(text).response_format is None
    json_mode = _request(
        response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    )
    converted = convert.request_from_proto(json_mode).response_format
    assert converted is not None
    assert converted.openai() == {"type": "json_object"}


@pytest.mark.parametrize(
    ("response_format", "field"),
    [
        (
            pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="x"),
            "response_format.schema",
        ),
        (
            pb.ResponseFormat(
                type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="no spaces", schema=_schema({})
            ),
            "response_format.name",
        ),
        (
            pb.ResponseFormat(
                type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="x", schema=_schema({"type": 3})
            ),
            "response_format.schema",
        ),
        (pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_TEXT, strict=True), "response_format"),
        (pb.ResponseFormat(type=42), "response_format.type"),
    ],
)
def test_a_bad_response_format_is_named(response_format: pb.ResponseFormat, field: str) -> None:
    assert _fields(_request(response_format=response_format)) == {field}


def _image_message(**image: object) -> pb.Message:
    return pb.Message(
        role=pb.ROLE_USER,
        parts=[pb.ContentPart(text="What is this?"), pb.ContentPart(image=pb.ImagePart(**image))],
    )


def test_multimodal_parts_convert() -> None:
    request = _request(
        messages=[
            _image_message(url="https://example.com/cat.png", detail="low"),
            pb.Message(
                role=pb.ROLE_USER,
                content="and this",
                parts=[pb.ContentPart(image=pb.ImagePart(data=b"\x89PNG", media_type="image/png"))],
            ),
        ]
    )
    first, second = convert.request_from_proto(request).messages
    assert first.content == ""
    assert first.parts == (
        TextPart("What is this?"),
        ImagePart(url="https://example.com/cat.png", detail="low"),
    )
    assert first.has_images
    assert second.parts == (ImagePart(data=b"\x89PNG", media_type="image/png"),)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (_image_message(url="file:///etc/passwd"), "messages[0].parts[1].image.url"),
        (_image_message(url="data:image/png;base64,AAAA"), "messages[0].parts[1].image.url"),
        (_image_message(url="https://x", detail="ultra"), "messages[0].parts[1].image.detail"),
        (
            _image_message(data=b"x", media_type="image/bmp"),
            "messages[0].parts[1].image.media_type",
        ),
        (_image_message(data=b"", media_type="image/png"), "messages[0].parts[1].image.data"),
        (
            _image_message(data=b"x" * (convert.MAX_INLINE_BYTES + 1), media_type="image/png"),
            "messages[0].parts[1].image.data",
        ),
        (
            pb.Message(
                role=pb.ROLE_USER,
                parts=[pb.ContentPart(audio=pb.AudioPart(data=b"x", format="ogg"))],
            ),
            "messages[0].parts[0].audio.format",
        ),
        (
            pb.Message(
                role=pb.ROLE_SYSTEM,
                content="be brief",
                parts=[pb.ContentPart(image=pb.ImagePart(url="https://x/y.png"))],
            ),
            "messages[0].parts[0]",
        ),
        (pb.Message(role=pb.ROLE_USER, parts=[pb.ContentPart()]), "messages[0].parts[0]"),
    ],
)
def test_bad_parts_are_named(message: pb.Message, field: str) -> None:
    assert field in _fields(_request(messages=[message]))


def test_the_number_of_parts_is_bounded() -> None:
    parts = [pb.ContentPart(text="x")] * (convert.MAX_PARTS + 1)
    request = _request(messages=[pb.Message(role=pb.ROLE_USER, parts=parts)])
    assert "messages[0].parts" in _fields(request)
