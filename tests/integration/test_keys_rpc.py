"""Caller keys over real gRPC: who may call, which models, how often; never a key in the log.

One gateway process with three keys in front of the simulator:
`alpha` may use `chat` only, 2 requests a window; `beta` may use every model;
`gamma` may use `other` only. The deployment serving `chat` allows 1000
requests a window, so when alpha is refused it is by its own limit.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import Proc, gateway_config, start_gateway

pytestmark = pytest.mark.integration

# Fresh keys each run, so finding one in the log cannot be a coincidence.
ALPHA = f"sk-alpha-{secrets.token_hex(12)}"
BETA = f"sk-beta-{secrets.token_hex(12)}"
GAMMA = f"sk-gamma-{secrets.token_hex(12)}"
UNKNOWN = f"sk-nobody-{secrets.token_hex(12)}"
ALPHA_RPM = 2


@dataclass(frozen=True)
class Keyed:
    proc: Proc
    stub: pb_grpc.GatewayStub
    channel: grpc.Channel


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def keyed(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    config = gateway_config(
        sim,
        {"chat": ["instant"], "other": ["instant"]},
        router_settings={"max_queue_wait": 0, "num_retries": 0},
        switchboard={
            "limits": {"window_seconds": 60},
            "aliases": {"quick": "chat"},
            "keys": [
                {
                    "name": "alpha",
                    "sha256": _digest(ALPHA),
                    "models": ["quick"],
                    "rpm": ALPHA_RPM,
                    "metadata": {"team": "search"},
                },
                {"name": "beta", "sha256": _digest(BETA), "models": ["*"]},
                {"name": "gamma", "sha256": _digest(GAMMA), "models": ["other"]},
            ],
        },
    )
    config["model_list"][0]["litellm_params"]["rpm"] = 1000  # type: ignore[index]
    proc, address = start_gateway(config, tmp_path_factory.mktemp("keys"))
    with grpc.insecure_channel(address) as channel:
        yield Keyed(proc, pb_grpc.GatewayStub(channel), channel)
    assert proc.terminate() == 0, proc.output()


def _request(model: str = "chat") -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")], max_tokens=4
    )


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _refusal(call: Callable[[], object]) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert isinstance(error, grpc.Call)
    return error


def _details(error: grpc.Call) -> dict[str, Any]:
    status = rpc_status.from_call(error)
    assert status is not None
    return {d.type_url.rsplit(".", 1)[-1]: d for d in status.details}


def _error_info(error: grpc.Call) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    assert _details(error)["ErrorInfo"].Unpack(info)
    return info


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((), id="no header"),
        pytest.param(_auth(UNKNOWN), id="unknown key"),
        pytest.param((("authorization", f"Basic {BETA}"),), id="another scheme"),
    ],
)
def test_without_a_known_key_every_rpc_is_unauthenticated(
    keyed: Keyed, metadata: tuple[tuple[str, str], ...]
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: keyed.stub.Complete(_request(), metadata=metadata, timeout=30),
        lambda: list(keyed.stub.StreamComplete(_request(), metadata=metadata, timeout=30)),
        lambda: keyed.stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=30),
        # Bytes that are no request at all: a stranger does not even learn that.
        lambda: keyed.channel.unary_unary("/switchboard.v1.Gateway/Complete")(
            b"\xff\xff\xff", metadata=metadata, timeout=30
        ),
    ]
    for call in calls:
        error = _refusal(call)
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert _error_info(error).reason == "UNAUTHENTICATED"
        assert BETA not in str(error.details())
        assert UNKNOWN not in str(error.details())


def test_health_answers_without_a_key(keyed: Keyed) -> None:
    # Load balancers carry no key; health has slots of its own (test_slots_rpc.py).
    health = health_pb2_grpc.HealthStub(keyed.channel)
    for service in ("", "switchboard.v1.Gateway"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_a_key_serves_complete_and_stream(keyed: Keyed) -> None:
    response = keyed.stub.Complete(_request(), metadata=_auth(BETA), timeout=30)
    assert response.message.content
    events = list(keyed.stub.StreamComplete(_request("other"), metadata=_auth(BETA), timeout=30))
    assert events[-1].WhichOneof("event") == "final"


def test_a_key_for_another_model_is_permission_denied(keyed: Keyed) -> None:
    for model in ("chat", "quick"):
        request = _request(model)
        error = _refusal(
            functools.partial(keyed.stub.Complete, request, metadata=_auth(GAMMA), timeout=30)
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        info = _error_info(error)
        assert info.reason == "MODEL_NOT_ALLOWED"
        assert dict(info.metadata) == {"model": model, "key": "gamma"}
    # The same key is served on the model it may use.
    assert keyed.stub.Complete(_request("other"), metadata=_auth(GAMMA), timeout=30).message.content


def test_list_models_shows_a_scoped_key_only_its_models(keyed: Keyed) -> None:
    scoped = keyed.stub.ListModels(pb.ListModelsRequest(), metadata=_auth(GAMMA), timeout=30)
    assert [g.name for g in scoped.groups] == ["other"]
    assert list(scoped.aliases) == []
    # alpha lists the alias `quick`: it sees the group and the alias.
    aliased = keyed.stub.ListModels(pb.ListModelsRequest(), metadata=_auth(ALPHA), timeout=30)
    assert [g.name for g in aliased.groups] == ["chat"]
    assert [(a.name, a.target) for a in aliased.aliases] == [("quick", "chat")]
    everything = keyed.stub.ListModels(pb.ListModelsRequest(), metadata=_auth(BETA), timeout=30)
    assert sorted(g.name for g in everything.groups) == ["chat", "other"]


def test_a_spent_key_is_refused_while_the_deployment_has_room(keyed: Keyed) -> None:
    for _ in range(ALPHA_RPM):
        keyed.stub.Complete(_request(), metadata=_auth(ALPHA), timeout=30)
    error = _refusal(lambda: keyed.stub.Complete(_request(), metadata=_auth(ALPHA), timeout=30))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    quota = error_details_pb2.QuotaFailure()
    assert _details(error)["QuotaFailure"].Unpack(quota)
    assert [v.subject for v in quota.violations] == ["key:alpha"]
    retry = error_details_pb2.RetryInfo()
    assert _details(error)["RetryInfo"].Unpack(retry)
    # Within the window, give or take one of the limiter's buckets.
    assert 0 < retry.retry_delay.ToNanoseconds() / 1e9 <= 60.1
    # Another key is served by the same deployment, which has plenty of room left.
    served = keyed.stub.Complete(_request(), metadata=_auth(BETA), timeout=30)
    assert served.deployment == "chat-instant"
    models = keyed.stub.ListModels(pb.ListModelsRequest(), metadata=_auth(BETA), timeout=30)
    (chat,) = [g for g in models.groups if g.name == "chat"]
    (deployment,) = chat.deployments
    assert deployment.requests_remaining > 900


def test_the_log_names_refused_keys_but_never_holds_a_key(keyed: Keyed) -> None:
    with pytest.raises(grpc.RpcError):
        keyed.stub.Complete(_request(), metadata=_auth(GAMMA), timeout=30)
    with pytest.raises(grpc.RpcError):
        keyed.stub.Complete(_request(), metadata=_auth(UNKNOWN), timeout=30)
    # The refusal is logged before the status is sent; the drain thread may trail it.
    give_up = time.monotonic() + 10
    while "(key gamma) -> PERMISSION_DENIED" not in keyed.proc.output():
        assert time.monotonic() < give_up, keyed.proc.output()
        time.sleep(0.05)
    output = keyed.proc.output()
    assert "UNAUTHENTICATED" in output
    for key in (ALPHA, BETA, GAMMA, UNKNOWN):
        assert key not in output
