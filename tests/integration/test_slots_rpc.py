"""Call slots: health and reflection cannot take the Gateway's, and a full budget answers at once.

One gateway process with a caller key and a Gateway budget of a few calls,
in front of a simulator whose `hold` profile keeps a call in flight for a
minute. The simulator's `/sim/stats` says when the held calls have arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import yaml
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.server import WATCH_STREAMS

from .procs import Proc, gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

KEY = f"sk-slots-{secrets.token_hex(12)}"
AUTH = (("authorization", f"Bearer {KEY}"),)
BOUND = 4
WATCHES = 1024
CHANNELS = 16  # 64 streams each, under the server's 100 per connection
# Distinct connections: channels to one target otherwise share one.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


@dataclass(frozen=True)
class Rig:
    proc: Proc
    address: str
    stats_url: str


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    directory = tmp_path_factory.mktemp("slots")
    profiles = directory / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({"hold": {"ttft_ms": 60_000}}))
    sim, sim_url = start_sim(profiles)
    config = gateway_config(
        sim_url,
        {"chat": ["instant"], "hold": ["hold"]},
        router_settings={"num_retries": 0},
        switchboard={
            "server": {"max_concurrent_calls": BOUND},
            "keys": [{"name": "app", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}],
        },
        provider_path="fast-path",
    )
    proc, address = start_gateway(config, directory)
    try:
        yield Rig(proc, address, sim_url.removesuffix("/v1") + "/sim/stats")
        assert proc.terminate() == 0, proc.output()
    finally:
        proc.kill()
        sim.terminate()


@pytest.fixture
async def channel(rig: Rig) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(rig.address) as channel:
        yield channel


def _request(model: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content="hi")], max_tokens=4
    )


async def _in_flight_upstream(rig: Rig, count: int, timeout_s: float = 20.0) -> None:
    """Until the simulator holds `count` requests."""
    give_up = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while (await http.get(rig.stats_url)).json()["in_flight"] != count:
            assert time.monotonic() < give_up, f"the simulator never held {count} requests"
            await asyncio.sleep(0.02)


def _details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The `google.rpc` details of a refusal, by type name."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert isinstance(raw, bytes), "no status details"
    status = status_pb2.Status.FromString(raw)
    found: dict[str, Any] = {}
    for packed in status.details:
        name = packed.type_url.rsplit(".", 1)[-1]
        message = getattr(error_details_pb2, name)()
        assert packed.Unpack(message)
        found[name] = message
    return found


async def _first(call: Any) -> Any:
    """A Watch's first status, or the error it was refused with."""
    try:
        return (await call.read()).status
    except grpc.aio.AioRpcError as error:
        return error


async def test_a_thousand_watch_streams_without_a_key_leave_keyed_calls_served(rig: Rig) -> None:
    channels = [
        grpc.aio.insecure_channel(rig.address, options=OWN_CONNECTION) for _ in range(CHANNELS)
    ]
    watches = [
        health_pb2_grpc.HealthStub(channels[i % CHANNELS]).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        for i in range(WATCHES)
    ]
    try:
        firsts = await asyncio.wait_for(asyncio.gather(*(_first(w) for w in watches)), 30)
        # Up to the Watch bound they stream; past it they are refused at once.
        assert firsts.count(health_pb2.HealthCheckResponse.SERVING) == WATCH_STREAMS
        refusals = [f for f in firsts if isinstance(f, grpc.aio.AioRpcError)]
        assert len(refusals) == WATCHES - WATCH_STREAMS
        assert {r.code() for r in refusals} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        info = _details(refusals[0])["ErrorInfo"]
        assert (info.reason, info.domain) == ("CAPACITY_EXHAUSTED", "switchboard.dev")

        # With the Watch streams held, a keyed call is served, and a Check answers.
        async with grpc.aio.insecure_channel(rig.address, options=OWN_CONNECTION) as channel:
            answer = await pb_grpc.GatewayStub(channel).Complete(
                _request("chat"), metadata=AUTH, timeout=10
            )
            assert answer.deployment == "chat-instant"
            checked = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
        assert sum(not w.done() for w in watches) == WATCH_STREAMS
    finally:
        for watch in watches:
            watch.cancel()
        for channel in channels:
            await channel.close()


async def _hold(rig: Rig, stub: pb_grpc.GatewayStub) -> list[Any]:
    """BOUND calls in flight upstream, half of them streams; fails if one is refused."""
    held: list[Any] = [
        stub.Complete(_request("hold"), metadata=AUTH, timeout=60) for _ in range(BOUND // 2)
    ] + [
        stub.StreamComplete(_request("hold"), metadata=AUTH, timeout=60) for _ in range(BOUND // 2)
    ]
    await _in_flight_upstream(rig, BOUND)
    assert not any(call.done() for call in held)
    return held


async def test_a_call_past_the_budget_is_refused_at_once_and_cancels_give_slots_back(
    rig: Rig, channel: grpc.aio.Channel
) -> None:
    stub = pb_grpc.GatewayStub(channel)
    for _ in range(3):
        held = await _hold(rig, stub)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListModels(pb.ListModelsRequest(), metadata=AUTH, timeout=30)
        assert time.monotonic() - started < 5, "refused at once, not after waiting for room"
        error = caught.value
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = _details(error)
        assert details["ErrorInfo"].reason == "CAPACITY_EXHAUSTED"
        (violation,) = details["QuotaFailure"].violations
        assert violation.subject == "server.max_concurrent_calls"
        # Health needs no Gateway slot.
        checked = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        for call in held:
            call.cancel()
        await _in_flight_upstream(rig, 0)
        # Every cancelled call gives its slot back: the next round holds BOUND again.
        await _until_served(stub)
    assert "Traceback" not in rig.proc.output()


async def _until_served(stub: pb_grpc.GatewayStub, timeout_s: float = 10.0) -> None:
    """Until a call is served again (the server settles a cancel a moment after the client)."""
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            await stub.ListModels(pb.ListModelsRequest(), metadata=AUTH, timeout=5)
            return
        except grpc.aio.AioRpcError as error:
            code = error.code()
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() < give_up, "the budget was not given back"
        await asyncio.sleep(0.02)


async def test_reflection_answers_without_a_key_or_a_gateway_slot(
    rig: Rig, channel: grpc.aio.Channel
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = pb_grpc.GatewayStub(channel)
    held = await _hold(rig, stub)
    try:
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        services = [s.name async for r in reflect for s in r.list_services_response.service]
        assert "switchboard.v1.Gateway" in services
    finally:
        for call in held:
            call.cancel()
        await _in_flight_upstream(rig, 0)
        await _until_served(stub)
