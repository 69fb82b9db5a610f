"""Past the bound on calls in flight, a call is refused at once instead of queueing."""

from __future__ import annotations

import asyncio
import random
import time

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.server import GatewayServer
from switchboard.app import build_gateway
from switchboard.config import Address, parse_settings
from switchboard.sim import SimProfile, SimServer

pytestmark = pytest.mark.integration

BOUND = 2


async def test_calls_beyond_the_bound_are_resource_exhausted_at_once() -> None:
    # Each call holds the upstream for 30 s unless cancelled.
    sim = SimServer(
        {"slow": SimProfile(ttft_ms=30_000)}, default_profile="slow", rng=random.Random(1)
    )
    await sim.start()
    settings = parse_settings(
        f"""
model_list:
  - model_name: chat
    litellm_params: {{model: openai/slow, api_base: "{sim.base_url}", api_key: sim}}
""",
        source="test",
        env={},
    )
    server = GatewayServer(
        build_gateway(settings), clock=time.monotonic, max_concurrent_calls=BOUND
    )
    port = await server.start(Address("127.0.0.1", 0))
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="hi")]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GatewayStub(channel)
            held = [stub.Complete(request, timeout=60) for _ in range(BOUND)]
            await sim.stats.wait_for(lambda s: s.in_flight == BOUND)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Complete(request, timeout=60)
            refused_in = time.monotonic() - started
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused_in < 5, "refused at once, not after waiting for room"
            for call in held:
                call.cancel()
            await asyncio.wait_for(sim.stats.wait_for(lambda s: s.in_flight == 0), 5)
            # The refused call never reached the upstream.
            assert sim.stats.requests == BOUND
    finally:
        await server.stop(0)
        await sim.stop()
