"""A caller that cancels mid-stream: the upstream closes at once and the reservation is refunded.

The simulator runs in this process so its disconnect is observed on the
same clock as the cancel; the gateway is a real process in between.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.sim import SimProfile, SimServer

from .procs import PROVIDER_PATHS, assert_provider_path, gateway_config, start_gateway

pytestmark = pytest.mark.integration

TPM = 100_000
MAX_TOKENS = 200


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    # 20 tokens a second for 200 tokens: a stream that is surely in flight for 10 s.
    slow = SimProfile(tokens_per_second=20, min_output_tokens=200, max_output_tokens=200)
    server = SimServer({"slow": slow}, default_profile="slow", rng=random.Random(5))
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("provider_path", PROVIDER_PATHS)
async def test_cancel_mid_stream_closes_upstream_within_100ms_and_refunds(
    sim: SimServer, tmp_path: Path, provider_path: str
) -> None:
    config = gateway_config(sim.base_url, {"slow": ["slow"]}, provider_path=provider_path)
    config["model_list"][0]["litellm_params"]["tpm"] = TPM  # type: ignore[index]
    proc, address = start_gateway(config, tmp_path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            request = pb.CompleteRequest(
                model="slow",
                messages=[pb.Message(role=pb.ROLE_USER, content="Tell me a long story")],
                max_tokens=MAX_TOKENS,
            )
            call = stub.StreamComplete(request, timeout=30)
            deltas = 0
            async for event in call:
                assert event.WhichOneof("event") == "delta"
                deltas += 1
                if deltas == 3:
                    break
            (deployment,) = (await stub.ListModels(pb.ListModelsRequest())).groups[0].deployments
            held = TPM - deployment.tokens_remaining
            assert held >= MAX_TOKENS, "the reservation covers max_tokens while streaming"

            cancelled_at = time.monotonic()
            call.cancel()
            await asyncio.wait_for(sim.stats.wait_for_disconnects(1), timeout=5)
            noticed_at = sim.stats.disconnect_times[0]
            assert noticed_at - cancelled_at < 0.100, noticed_at - cancelled_at

            # The gateway settles after closing upstream; ListModels shows the refund.
            for _ in range(100):
                (deployment,) = (
                    (await stub.ListModels(pb.ListModelsRequest())).groups[0].deployments
                )
                if deployment.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            assert deployment.in_flight == 0
            charged = TPM - deployment.tokens_remaining
            # Only the prompt and the chunks delivered before the cancel stay charged.
            assert charged < held
            assert charged < MAX_TOKENS
            print(
                f"cancel -> upstream closed in {1000 * (noticed_at - cancelled_at):.1f} ms; "
                f"held {held} tokens while streaming, {charged} charged after the cancel"
            )
    finally:
        assert proc.terminate() == 0, proc.output()
    assert_provider_path(proc, provider_path)
