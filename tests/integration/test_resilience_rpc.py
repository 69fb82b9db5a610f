"""Retries, cooldowns and fallbacks against the simulator's injected faults, over real HTTP.

Every fault here is certain (rate 1.0) or exact (an RPM budget), so each
test knows which deployment fails how, and the simulator's own counters
(`GET /sim/stats`) witness what the gateway sent upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import assert_provider_path, gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

RPM_WINDOW_S = 30.0
RETRY_AFTER_S = 3.0
PROFILES: dict[str, dict[str, Any]] = {
    # Every request 429 with Retry-After.
    "throttled": {"faults": {"rate_limit": 1.0, "retry_after_s": RETRY_AFTER_S}},
    # Two requests per window, announced in x-ratelimit-* headers, then 429.
    "capped": {"rpm_budget": 2, "budget_window_s": RPM_WINDOW_S},
    "steady": {"ttft_ms": 20},
    "storm": {"faults": {"server_error": 1.0}},
    "outage": {"faults": {"unavailable": 1.0}},
    "reset": {"faults": {"connection_reset": 1.0}},
    "narrow": {"max_context_tokens": 30},
    "dropper": {"faults": {"mid_stream_drop": 1.0, "drop_after_chunks": 3}},
    "stillborn": {"faults": {"mid_stream_drop": 1.0, "drop_after_chunks": 0}},
}
GROUPS = {
    "limited": ["throttled", "steady"],
    "announced": ["capped", "steady"],
    "stormy": ["storm", "instant"],
    "dead": ["outage", "reset"],
    "rescue": ["instant"],
    "void": ["outage"],
    "small": ["narrow"],
    "wide": ["instant"],
    "dropping": ["dropper"],
    "early": ["stillborn"],
}
ALLOWED_FAILS = 2


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory, provider_path: str) -> Iterator[str]:
    """One simulator per provider path, so its counters witness one gateway's calls."""
    path = tmp_path_factory.mktemp("sim") / "profiles.yaml"
    path.write_text(yaml.safe_dump(PROFILES))
    proc, url = start_sim(path)
    yield url
    proc.terminate()


@pytest.fixture(scope="module")
def stub(
    sim_url: str, tmp_path_factory: pytest.TempPathFactory, provider_path: str
) -> Iterator[pb_grpc.GatewayStub]:
    config = gateway_config(
        sim_url,
        GROUPS,
        router_settings={
            "num_retries": 2,
            "allowed_fails": ALLOWED_FAILS,
            "cooldown_time": 30,
            "max_queue_wait": 0,
            "fallbacks": [{"dead": ["rescue"]}, {"early": ["rescue"]}],
            "context_window_fallbacks": [{"small": ["wide"]}],
        },
        provider_path=provider_path,
    )
    proc, address = start_gateway(config, tmp_path_factory.mktemp("gw"))
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.GatewayStub(channel)
    assert proc.terminate() == 0, proc.output()
    assert_provider_path(proc, provider_path)


def _request(model: str, content: str = "Say hi") -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=content)]
    )


def _stats(sim_url: str) -> dict[str, Any]:
    base = sim_url.removesuffix("/v1")
    stats: dict[str, Any] = httpx.get(f"{base}/sim/stats").json()
    return stats


def _deployment(stub: pb_grpc.GatewayStub, deployment_id: str) -> pb.Deployment:
    for group in stub.ListModels(pb.ListModelsRequest()).groups:
        for deployment in group.deployments:
            if deployment.id == deployment_id:
                return deployment
    raise AssertionError(deployment_id)


def test_retry_after_cools_a_deployment_for_that_long_without_a_failed_call(
    stub: pb_grpc.GatewayStub, sim_url: str
) -> None:
    hit_429: pb.CompleteResponse | None = None
    for _ in range(100):
        response = stub.Complete(_request("limited"), timeout=30)
        if any(a.outcome == pb.ATTEMPT_OUTCOME_RATE_LIMITED for a in response.attempts):
            hit_429 = response
            break
    assert hit_429 is not None, "the throttled deployment was never tried"
    noticed = time.time()
    # The call that met the 429 was still answered, by the other deployment.
    assert hit_429.deployment == "limited-steady"
    throttled = _deployment(stub, "limited-throttled")
    assert throttled.state == pb.DEPLOYMENT_STATE_COOLING_DOWN
    until = throttled.cooldown_until.ToNanoseconds() / 1e9
    # Cooled for the Retry-After the provider gave, not the configured 30 s.
    assert noticed - 1.0 < until - RETRY_AFTER_S <= noticed
    served_during = []
    while time.time() < until - 0.2:
        response = stub.Complete(_request("limited"), timeout=30)
        assert len(response.attempts) == 1
        served_during.append(response.deployment)
    assert set(served_during) == {"limited-steady"}
    assert _stats(sim_url)["faults"]["rate_limit"] == 1, "no second 429 was provoked"


def test_provider_headers_saying_nothing_is_left_pause_before_any_429(
    stub: pb_grpc.GatewayStub, sim_url: str
) -> None:
    served = [stub.Complete(_request("announced"), timeout=30).deployment for _ in range(40)]
    # The capped deployment answered its two requests, the second announcing
    # x-ratelimit-remaining-requests: 0, and was paused instead of asked again.
    assert served.count("announced-capped") == 2
    assert "rpm_budget" not in _stats(sim_url)["faults"]
    capped = _deployment(stub, "announced-capped")
    assert capped.state == pb.DEPLOYMENT_STATE_COOLING_DOWN


def test_a_5xx_storm_on_one_deployment_is_invisible_to_callers(
    stub: pb_grpc.GatewayStub, sim_url: str
) -> None:
    responses = [stub.Complete(_request("stormy"), timeout=30) for _ in range(30)]
    assert {r.deployment for r in responses} == {"stormy-instant"}
    # More than allowed_fails failures cool it down; it is not tried again meanwhile.
    assert _stats(sim_url)["faults"]["server_error"] == ALLOWED_FAILS + 1
    assert _deployment(stub, "stormy-storm").state == pb.DEPLOYMENT_STATE_COOLING_DOWN


def test_a_group_entirely_down_is_answered_by_its_fallback_group(
    stub: pb_grpc.GatewayStub,
) -> None:
    response = stub.Complete(_request("dead"), timeout=30)
    assert response.model_group == "rescue"
    assert response.fallback_depth == 1
    outcomes = [a.outcome for a in response.attempts]
    assert outcomes[-1] == pb.ATTEMPT_OUTCOME_SUCCESS
    assert outcomes.count(pb.ATTEMPT_OUTCOME_UNAVAILABLE) == 2


def test_everything_down_is_unavailable_with_error_info(stub: pb_grpc.GatewayStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Complete(_request("void"), timeout=30)
    error = caught.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "switchboard.dev"
    assert info.reason == "ALL_DEPLOYMENTS_FAILED"
    assert info.metadata["model_group"] == "void"


def test_a_context_window_error_goes_to_the_context_window_fallback(
    stub: pb_grpc.GatewayStub,
) -> None:
    response = stub.Complete(_request("small", "tell me a story " * 40), timeout=30)
    assert response.model_group == "wide"
    assert response.attempts[0].outcome == pb.ATTEMPT_OUTCOME_CONTEXT_WINDOW_EXCEEDED


def test_a_drop_after_the_first_chunk_ends_the_stream_unavailable(
    stub: pb_grpc.GatewayStub,
) -> None:
    kinds: list[str | None] = []
    events = stub.StreamComplete(_request("dropping"), timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        kinds.extend(event.WhichOneof("event") for event in events)
    assert kinds
    assert set(kinds) == {"delta"}
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_a_drop_before_the_first_chunk_falls_back_transparently(
    stub: pb_grpc.GatewayStub,
) -> None:
    events = list(stub.StreamComplete(_request("early"), timeout=30))
    final = events[-1].final
    assert final.model_group == "rescue"
    assert final.fallback_depth == 1
    assert all(e.WhichOneof("event") == "delta" for e in events[:-1])
    assert len(events) > 1
