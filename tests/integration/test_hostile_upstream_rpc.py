"""A hostile upstream: every bad kind of answer, and none of its words reach a caller.

One scripted upstream (hostile_upstream.py) answers each kind of bad answer
by model name: absurd Retry-After values, error text quoting an organization
and key fragments at 429/500/400/401, undecodable JSON, HTML pages, missing
or empty choices, wrong types, impossible usage, streams that never send a
chunk. For each kind and each call shape, a group with the hostile deployment
and a healthy one must answer (cost-based routing tries the hostile one
first, and the attempts say it was tried), and a group with only the hostile
one must fail with the status the error table gives, with ErrorInfo, never
UNKNOWN. ListModels must answer after each. Finally no response, no line of
the gateway's output and no span the gateway exported to a real OTLP
receiver may hold the provider's message or any fragment of its secrets.
Runs on both provider paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .hostile_upstream import FRAGMENTS, KINDS, SECRET, BackgroundLoop, HostileUpstream
from .otlp_sink import OtlpSink
from .procs import Proc, assert_provider_path, gateway_config, start_gateway

pytestmark = pytest.mark.integration

SHAPES = ("complete", "stream")


@dataclass
class World:
    stub: pb_grpc.GatewayStub
    gateway: Proc
    upstream: HostileUpstream
    sink: OtlpSink
    background: BackgroundLoop
    provider_path: str


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for kind in KINDS:
        for shape in SHAPES:
            groups[f"mixed-{kind}-{shape}"] = [kind, "healthy"]
            groups[f"alone-{kind}-{shape}"] = [kind]
    return groups


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, provider_path: str) -> Iterator[World]:
    background = BackgroundLoop()
    upstream = HostileUpstream()
    sink = OtlpSink()
    background.run(upstream.start())
    background.run(sink.start())
    config = gateway_config(
        upstream.url,
        _groups(),
        router_settings={
            # The hostile deployment is free, the healthy one unpriced: it is always tried first.
            "routing_strategy": "cost-based-routing",
            "num_retries": 1,
            "max_queue_wait": 0,
        },
        switchboard={
            "telemetry": {
                "otlp_endpoint": f"http://127.0.0.1:{sink.port}",
                "service_name": "switchboard-hostile",
            }
        },
        provider_path=provider_path,
    )
    for deployment in config["model_list"]:  # type: ignore[attr-defined]
        deployment["litellm_params"]["api_key"] = "hostile-test-key"
        deployment["litellm_params"]["timeout"] = 10
        if not deployment["model_info"]["id"].endswith("-healthy"):
            deployment["model_info"].update(input_cost_per_token=0.0, output_cost_per_token=0.0)
    gateway, address = start_gateway(config, tmp_path_factory.mktemp("hostile"))
    try:
        with grpc.insecure_channel(address) as channel:
            yield World(
                pb_grpc.GatewayStub(channel), gateway, upstream, sink, background, provider_path
            )
    finally:
        gateway.kill()
        background.run(sink.stop())
        background.run(upstream.stop())
        background.close()


def _request(group: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=group, messages=[pb.Message(role=pb.ROLE_USER, content="hi")])


def _clean(text: str, where: str, *, python_text: bool = False) -> None:
    """No piece of the provider's message in `text` (nor, unless allowed, Python's own text)."""
    forbidden = (*FRAGMENTS, "sk-", "org-") + (() if python_text else ("Traceback", "Error:"))
    for fragment in forbidden:
        at = text.find(fragment)
        assert at < 0, f"{fragment!r} in {where}: {text[max(0, at - 1500) : at + 1500]}"


def _error_info(error: grpc.Call) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin trailer"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            _clean(str(status), "the status details")
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def _call(world: World, group: str, shape: str) -> tuple[str, Any]:
    """("ok", attempts) or ("error", the RpcError)."""
    try:
        if shape == "complete":
            response = world.stub.Complete(_request(group), timeout=30)
            _clean(str(response), "a response")
            return "ok", list(response.attempts)
        events = list(world.stub.StreamComplete(_request(group), timeout=30))
        _clean("".join(str(e) for e in events), "a stream")
        assert events
        assert events[-1].WhichOneof("event") == "final", events
        assert "".join(e.delta.content for e in events if e.WhichOneof("event") == "delta")
        return "ok", list(events[-1].final.attempts)
    except grpc.RpcError as error:
        if not isinstance(error, grpc.Call):
            raise
        _clean(str(error.details()), "an error message")
        return "error", error


def _list_models_answers(world: World) -> None:
    models = world.stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert len(models.groups) == len(_groups())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_group_with_a_healthy_deployment_answers(world: World, kind: str, shape: str) -> None:
    group = f"mixed-{kind}-{shape}"
    outcome, result = _call(world, group, shape)
    if shape == "stream" and world.provider_path in KINDS[kind].stream_answers:
        assert outcome == "ok", (result.code(), result.details())
        assert [a.deployment for a in result] == [f"{group}-{kind}"]
    elif KINDS[kind].falls_back:
        assert outcome == "ok", (result.code(), result.details())
        attempts = result
        # The hostile deployment was tried first and failed; the healthy one answered.
        assert [a.deployment for a in attempts] == [f"{group}-{kind}", f"{group}-healthy"]
        assert attempts[0].outcome != pb.ATTEMPT_OUTCOME_SUCCESS
        assert attempts[0].error.startswith(("deployment ", "rate limited by deployment "))
        assert f"{group}-{kind}" in attempts[0].error
        assert attempts[-1].outcome == pb.ATTEMPT_OUTCOME_SUCCESS
    else:
        # A provider 400 is answered at once, as the error table says: no fallback.
        assert outcome == "error"
        assert result.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert _error_info(result).reason == "UPSTREAM_BAD_REQUEST"
    _list_models_answers(world)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_group_of_only_the_hostile_deployment_fails_cleanly(
    world: World, kind: str, shape: str
) -> None:
    group = f"alone-{kind}-{shape}"
    before = world.upstream.calls[f"{kind}:{shape}"]
    outcome, error = _call(world, group, shape)
    if shape == "stream" and world.provider_path in KINDS[kind].stream_answers:
        assert outcome == "ok"
        return
    assert outcome == "error", f"{kind} answered"
    assert error.code().name in KINDS[kind].status_on_its_own, (error.code(), error.details())
    info = _error_info(error)
    assert info.domain == "switchboard.dev"
    assert info.reason == info.reason.upper()
    # It was really tried, upstream.
    assert world.upstream.calls[f"{kind}:{shape}"] > before
    _list_models_answers(world)


def test_no_provider_text_in_the_log_or_the_spans(world: World) -> None:
    """Runs last: the gateway's whole output and every span it exported."""
    hostile_attempts = sum(world.upstream.calls[f"{k}:{s}"] for k in KINDS for s in SHAPES)
    assert hostile_attempts >= 2 * len(KINDS) * len(SHAPES)

    def exported(sink: OtlpSink) -> bool:
        names = [span.name for span in sink.spans()]
        return sum(name.startswith("chat ") for name in names) >= hostile_attempts

    world.background.run(world.sink.wait_for(exported, within_s=30), timeout=40)
    assert world.gateway.terminate() == 0, world.gateway.output()[-5000:]
    output = world.gateway.output()
    assert_provider_path(world.gateway, world.provider_path)
    # The provider layer logged each failed answer, redacted.
    assert "upstream failure: " in output
    assert "<org>" in output
    assert "<key>" in output
    assert SECRET not in output
    for line in output.splitlines():
        for fragment in (*FRAGMENTS[1:], "sk-", "org-", "Give Feedback", "LiteLLM.Info"):
            assert fragment not in line, f"{fragment!r} in the gateway's output: {line}"
    spans = list(world.sink.spans())
    failed = [s for s in spans if s.name.startswith("chat ") and s.status.message]
    assert failed, "no failed attempt span exported"
    for span in spans:
        # The server span's interceptor records grpc's AbortError (our own stack, no
        # provider text) as an exception event: Python's text is allowed there.
        _clean(str(span), f"span {span.name}", python_text=True)
