"""The limiter in front of a real simulator that enforces the same RPM itself.

N + k concurrent calls at a deployment limited to N requests per window:
N are admitted at once, the rest either wait for the window (then are
served) or are refused with RESOURCE_EXHAUSTED and RetryInfo, and the
simulator never has to answer 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.sim import SimProfile, SimServer

from .procs import gateway_config, start_gateway

pytestmark = pytest.mark.integration

N, K = 4, 4
WINDOW_S = 2.0
# The simulator counts a little less strictly than the gateway: requests reach
# it slightly after the gateway admits them, and its clock is its own.
SIM_WINDOW_S = 1.8


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    profile = SimProfile(rpm_budget=N, budget_window_s=SIM_WINDOW_S)
    profiles = {"capped": profile, "warm": SimProfile()}
    server = SimServer(profiles, default_profile="capped", rng=random.Random(3))
    await server.start()
    yield server
    await server.stop()


@contextlib.contextmanager
def _gateway(sim: SimServer, directory: Path, queue_wait: float) -> Iterator[str]:
    config = gateway_config(
        sim.base_url,
        {"capped": ["capped"], "warm": ["warm"]},
        router_settings={"max_queue_wait": queue_wait, "num_retries": 0},
        switchboard={"limits": {"window_seconds": WINDOW_S}},
    )
    config["model_list"][0]["litellm_params"]["rpm"] = N  # type: ignore[index]
    proc, address = start_gateway(config, directory)
    try:
        yield address
    finally:
        code = proc.terminate()
    assert code == 0, proc.output()


def _request(model: str = "capped") -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content="hi")], max_tokens=8
    )


async def _burst(address: str) -> list[pb.CompleteResponse | grpc.aio.AioRpcError]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        # The first call through a new process is slower; the burst's must not be.
        await stub.Complete(_request("warm"), timeout=30)
        results = await asyncio.gather(
            *(stub.Complete(_request(), timeout=30) for _ in range(N + K)),
            return_exceptions=True,
        )
    for result in results:
        assert isinstance(result, pb.CompleteResponse | grpc.aio.AioRpcError), result
    return results  # type: ignore[return-value]


def _retry_delay(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError("no RetryInfo")


async def test_beyond_the_limit_is_refused_with_retry_info(sim: SimServer, tmp_path: Path) -> None:
    with _gateway(sim, tmp_path, queue_wait=0.0) as address:
        results = await _burst(address)
        async with grpc.aio.insecure_channel(address) as channel:
            models = await pb_grpc.GatewayStub(channel).ListModels(pb.ListModelsRequest())
    (capped,) = [g for g in models.groups if g.name == "capped"]
    (deployment,) = capped.deployments
    assert deployment.rpm_limit == N
    assert deployment.HasField("requests_remaining")
    assert deployment.requests_remaining == 0
    assert not deployment.HasField("tokens_remaining"), "no token limit: unlimited"
    # The simulator's x-ratelimit-remaining-requests said 0 too: paused until its reset.
    assert deployment.state == pb.DEPLOYMENT_STATE_COOLING_DOWN
    served = [r for r in results if isinstance(r, pb.CompleteResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(served) == N
    assert len(refused) == K
    for error in refused:
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0 < _retry_delay(error) <= WINDOW_S
    assert sim.stats.statuses[429] == 0
    assert sim.stats.requests == 1 + N


async def test_beyond_the_limit_waits_for_the_window_then_is_served(
    sim: SimServer, tmp_path: Path
) -> None:
    with _gateway(sim, tmp_path, queue_wait=10.0) as address:
        results = await _burst(address)
    assert all(isinstance(r, pb.CompleteResponse) for r in results), [
        (r.code(), r.details()) for r in results if isinstance(r, grpc.aio.AioRpcError)
    ]
    waits = sorted(r.routing.queue_wait.ToNanoseconds() / 1e9 for r in results)  # type: ignore[union-attr]
    assert waits[:N] == [0.0] * N
    assert all(w > WINDOW_S * 0.5 for w in waits[N:]), waits
    assert sim.stats.statuses[429] == 0
    assert sim.stats.requests == 1 + N + K
    assert all(len(r.attempts) == 1 for r in results)  # type: ignore[union-attr]
