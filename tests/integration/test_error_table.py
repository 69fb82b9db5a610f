"""The design's error table, row by row: each condition's status and the details a client decodes.

One gateway and one simulator whose profiles fail in every way the table
lists; statuses and `google.rpc` details are read with grpcio-status as any
Python client would. Caller-key rows live in test_keys_rpc.py, cancellation
in test_cancel_rpc.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import assert_provider_path, gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

RETRY_AFTER_S = 2.0
PROFILES = {
    "throttled": {"faults": {"rate_limit": 1.0, "retry_after_s": RETRY_AFTER_S}},
    "broken": {"faults": {"server_error": 1.0}},
    "refusing": {"faults": {"connection_reset": 1.0}},
    "hanging": {"faults": {"timeout": 1.0, "hang_s": 30}},
    "narrow": {"max_context_tokens": 20},
    "prudish": {"faults": {"content_policy": 1.0}},
    "locked": {"faults": {"authentication": 1.0}},
    "sleepy": {"ttft_ms": 3000},
}
GROUPS = {name: [name] for name in PROFILES} | {"capped": ["instant"]}


@pytest.fixture(scope="module")
def stub(
    tmp_path_factory: pytest.TempPathFactory, provider_path: str
) -> Iterator[pb_grpc.GatewayStub]:
    """One simulator and gateway per provider path: every row holds on both."""
    directory = tmp_path_factory.mktemp("errors")
    profiles = directory / "profiles.yaml"
    profiles.write_text(yaml.safe_dump(PROFILES))
    sim, sim_url = start_sim(profiles)
    config = gateway_config(
        sim_url,
        GROUPS,
        router_settings={"num_retries": 0, "max_queue_wait": 0},
        provider_path=provider_path,
    )
    for deployment in config["model_list"]:  # type: ignore[attr-defined]
        if deployment["model_name"] == "hanging":
            deployment["litellm_params"]["timeout"] = 0.5
        if deployment["model_name"] == "capped":
            deployment["litellm_params"]["rpm"] = 1
    gateway, address = start_gateway(config, directory)
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.GatewayStub(channel)
    assert gateway.terminate() == 0, gateway.output()
    assert_provider_path(gateway, provider_path)
    sim.terminate()


def _request(model: str, content: str = "Say hi") -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=content)]
    )


def _refused(stub: pb_grpc.GatewayStub, request: pb.CompleteRequest, **kw: Any) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(request, timeout=kw.pop("timeout", 30), **kw)
    error = caught.value
    assert isinstance(error, grpc.Call)
    return error


def _details(error: grpc.Call) -> dict[str, pb_message.Message]:
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin trailer"
    assert status.code == error.code().value[0]
    decoded: dict[str, pb_message.Message] = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
            error_details_pb2.BadRequest,
        ):
            if detail.Is(kind.DESCRIPTOR):
                value = kind()
                detail.Unpack(value)
                decoded[kind.DESCRIPTOR.name] = value
    info = decoded["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.domain == "switchboard.dev"
    assert info.reason == info.reason.upper()
    return decoded


def _reason(details: dict[str, pb_message.Message]) -> str:
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    return info.reason


def _retry_s(details: dict[str, pb_message.Message]) -> float:
    info = details["RetryInfo"]
    assert isinstance(info, error_details_pb2.RetryInfo)
    return info.retry_delay.ToNanoseconds() / 1e9


def test_provider_429_on_every_candidate(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("throttled"))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = _details(error)
    assert _reason(details) == "ALL_DEPLOYMENTS_RATE_LIMITED"
    assert _retry_s(details) == pytest.approx(RETRY_AFTER_S, abs=0.01)


def test_no_headroom_in_our_own_limits(stub: pb_grpc.GatewayStub) -> None:
    stub.Complete(_request("capped"), timeout=30)
    error = _refused(stub, _request("capped"))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = _details(error)
    assert _reason(details) == "CAPACITY_EXHAUSTED"
    # The window (60 s) plus at most one of the limiter's 1/1024-window buckets.
    assert 0 < _retry_s(details) <= 60 * (1 + 1 / 1024)
    quota = details["QuotaFailure"]
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "deployment:capped-instant"


@pytest.mark.parametrize("model", ["broken", "refusing"])
def test_5xx_or_connection_reset(stub: pb_grpc.GatewayStub, model: str) -> None:
    error = _refused(stub, _request(model))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    details = _details(error)
    assert _reason(details) == "ALL_DEPLOYMENTS_FAILED"
    assert "RetryInfo" not in details


def test_upstream_timeout(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("hanging"))
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert _reason(_details(error)) == "ALL_DEPLOYMENTS_TIMED_OUT"


def test_the_callers_deadline_spent(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("sleepy"), timeout=0.5)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_bad_request(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, pb.CompleteRequest(model="broken"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = _details(error)
    assert _reason(details) == "INVALID_REQUEST"
    bad = details["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["messages"]


def test_context_window_exceeded_without_a_fallback(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("narrow", "tell me a long story " * 30))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(_details(error)) == "CONTEXT_WINDOW_EXCEEDED"


def test_content_policy(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("prudish"))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(_details(error)) == "CONTENT_POLICY_VIOLATION"


def test_unknown_model_or_alias(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("nope"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    details = _details(error)
    assert _reason(details) == "MODEL_NOT_FOUND"
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.metadata["model"] == "nope"


def test_the_provider_rejected_our_own_key(stub: pb_grpc.GatewayStub) -> None:
    error = _refused(stub, _request("locked"))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert _reason(_details(error)) == "ALL_DEPLOYMENTS_REFUSED_OUR_KEY"
