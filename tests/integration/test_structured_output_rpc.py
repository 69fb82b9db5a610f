"""`response_format` through a real gateway: JSON answers checked, and refused ones fall back.

The simulator answers JSON requests with an instance of the schema; a profile
with `broken_json_rate: 1` always cuts its JSON short. `simple-shuffle` with
weights puts the broken deployment first (a million to one), so the fallback
is what is tested, on both provider paths (litellm, and the fast path).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2
from jsonschema import Draft202012Validator

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import PROVIDER_PATHS, gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer"},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "population", "capital"],
    "additionalProperties": False,
}


def request(model: str, *, validate: bool | None = True) -> pb.CompleteRequest:
    schema = struct_pb2.Struct()
    schema.update(SCHEMA)
    msg = pb.CompleteRequest(
        model=model,
        messages=[pb.Message(role=pb.ROLE_USER, content="Describe Paris as JSON.")],
        response_format=pb.ResponseFormat(
            type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="city", schema=schema, strict=True
        ),
    )
    if validate is not None:
        msg.validate_json = validate
    return msg


@pytest.fixture(scope="module")
def json_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator process of its own: `good`, and `broken` (every JSON answer cut short)."""
    path = tmp_path_factory.mktemp("json-sim") / "profiles.yaml"
    path.write_text(yaml.safe_dump({"good": {}, "broken": {"broken_json_rate": 1.0}}))
    proc, url = start_sim(path, profile="good")
    yield url
    proc.terminate()


@pytest.fixture(scope="module", params=PROVIDER_PATHS)
def gateway(
    request: pytest.FixtureRequest, json_sim: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    config = gateway_config(
        json_sim,
        {"json": ["broken", "good"], "bad": ["broken"]},
        router_settings={"routing_strategy": "simple-shuffle", "num_retries": 1},
        provider_path=request.param,
    )
    for entry in config["model_list"]:  # type: ignore[attr-defined]
        entry["litellm_params"]["weight"] = (
            1_000_000 if "broken" in entry["model_info"]["id"] else 1
        )
    proc, address = start_gateway(config, tmp_path_factory.mktemp(request.param))
    yield address
    assert proc.terminate() == 0, proc.output()


async def call(address: str, msg: pb.CompleteRequest) -> pb.CompleteResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await pb_grpc.GatewayStub(channel).Complete(msg, timeout=20)


async def test_a_broken_answer_goes_to_the_next_deployment(gateway: str) -> None:
    reply = await call(gateway, request("json"))
    assert reply.deployment == "json-good"
    outcomes = [(a.deployment, a.outcome) for a in reply.attempts]
    assert outcomes == [
        ("json-broken", pb.ATTEMPT_OUTCOME_INVALID_OUTPUT),
        ("json-good", pb.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert "not JSON" in reply.attempts[0].error
    answer = json.loads(reply.message.content)
    Draft202012Validator(SCHEMA).validate(answer)


async def test_with_validation_off_the_broken_answer_is_returned_as_is(gateway: str) -> None:
    reply = await call(gateway, request("json", validate=False))
    assert reply.deployment == "json-broken"
    assert [a.outcome for a in reply.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.message.content)


async def test_when_no_deployment_answers_as_asked_the_caller_learns_why(gateway: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(gateway, request("bad"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not JSON" in (caught.value.details() or "")
    # The answer's own text is not quoted back in the error.
    assert "{" not in (caught.value.details() or "")


async def test_a_stream_reports_a_broken_answer_in_its_final_event(gateway: str) -> None:
    async with grpc.aio.insecure_channel(gateway) as channel:
        events = [e async for e in pb_grpc.GatewayStub(channel).StreamComplete(request("bad"))]
    final = events[-1].final
    assert "not JSON" in final.validation_error
    assert [a.outcome for a in final.attempts] == [pb.ATTEMPT_OUTCOME_INVALID_OUTPUT]
    text = "".join(e.delta.content for e in events[:-1])
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_a_good_stream_has_no_validation_error(gateway: str) -> None:
    msg = request("json")
    async with grpc.aio.insecure_channel(gateway) as channel:
        events = [e async for e in pb_grpc.GatewayStub(channel).StreamComplete(msg)]
    final = events[-1].final
    text = "".join(e.delta.content for e in events[:-1])
    if final.deployment == "json-good":
        assert final.validation_error == ""
        Draft202012Validator(SCHEMA).validate(json.loads(text))
    else:  # a stream cannot fall back: the broken one, reported
        assert final.validation_error


@pytest.mark.parametrize(
    ("response_format", "field"),
    [
        (pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="x"), "schema"),
        (pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT, name="x"), "response_format"),
        (pb.ResponseFormat(type=99), "response_format.type"),
    ],
)
async def test_a_bad_response_format_is_invalid_argument_naming_it(
    gateway: str, response_format: pb.ResponseFormat, field: str
) -> None:
    msg = pb.CompleteRequest(
        model="json",
        messages=[pb.Message(role=pb.ROLE_USER, content="hi")],
        response_format=response_format,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(gateway, msg)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
