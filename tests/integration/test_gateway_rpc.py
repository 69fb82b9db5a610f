"""The gateway over real gRPC, with the generated Python stub, against the simulator."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def _request(model: str = "chat", **fields: object) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model,
        messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")],
        **fields,  # type: ignore[arg-type]
    )


def _details(error: grpc.RpcError) -> dict[str, Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    return {d.type_url.rsplit(".", 1)[-1]: d for d in status.details}  # type: ignore[misc]


def test_complete_returns_content_usage_and_deployment(stub: pb_grpc.GatewayStub) -> None:
    response = stub.Complete(_request(), timeout=30)
    assert response.message.role == pb.ROLE_ASSISTANT
    assert response.message.content.strip()
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.deployment in {"chat-instant", "chat-fast"}
    assert response.model_group == "chat"
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert [a.outcome for a in response.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]
    assert response.routing.strategy == "latency-based-routing"
    assert response.deployment in response.routing.candidates
    assert set(response.routing.candidates) <= {"chat-instant", "chat-fast"}


def test_max_tokens_caps_the_answer(stub: pb_grpc.GatewayStub) -> None:
    response = stub.Complete(_request(max_tokens=3), timeout=30)
    assert response.usage.output_tokens == 3
    assert response.finish_reason == pb.FINISH_REASON_LENGTH


def test_an_alias_resolves_to_its_group(stub: pb_grpc.GatewayStub) -> None:
    assert stub.Complete(_request("quick"), timeout=30).model_group == "chat"


def test_stream_sends_deltas_then_one_final(stub: pb_grpc.GatewayStub) -> None:
    events = list(stub.StreamComplete(_request(), timeout=30))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds.count("final") == 1
    assert kinds[-1] == "final"
    assert kinds.count("delta") >= 3
    final = events[-1].final
    text = "".join(e.delta.content for e in events[:-1])
    assert text.strip()
    assert final.usage.output_tokens == len(events) - 1
    assert final.usage.input_tokens > 0
    assert final.deployment in {"chat-instant", "chat-fast"}
    assert final.time_to_first_chunk.ToNanoseconds() > 0


def test_empty_messages_is_invalid_argument_naming_messages(stub: pb_grpc.GatewayStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(pb.CompleteRequest(model="chat"), timeout=30)
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "messages" in error.details()
    bad_request = error_details_pb2.BadRequest()
    _details(error)["BadRequest"].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["messages"]


def test_stream_validates_before_streaming(stub: pb_grpc.GatewayStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.StreamComplete(_request(temperature=9.0), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "temperature" in caught.value.details()


def test_unknown_model_is_not_found_and_the_server_keeps_serving(
    stub: pb_grpc.GatewayStub,
) -> None:
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Complete(_request("nope"), timeout=30)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert "nope" in caught.value.details()
        info = error_details_pb2.ErrorInfo()
        _details(caught.value)["ErrorInfo"].Unpack(info)
        assert (info.domain, info.reason) == ("switchboard.dev", "MODEL_NOT_FOUND")
    assert stub.Complete(_request(), timeout=30).message.content


def test_list_models_shows_groups_and_aliases(stub: pb_grpc.GatewayStub) -> None:
    response = stub.ListModels(pb.ListModelsRequest(), timeout=30)
    groups = {g.name: [d.id for d in g.deployments] for g in response.groups}
    assert groups == {"chat": ["chat-instant", "chat-fast"], "trickle": ["trickle-trickle"]}
    assert [(a.name, a.target) for a in response.aliases] == [("quick", "chat")]


@pytest.mark.parametrize("service", ["", "switchboard.v1.Gateway"])
def test_health_is_serving(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
