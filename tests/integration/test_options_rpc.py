"""Provider options through a real gateway and simulator, on both provider paths."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import struct_pb2

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import PROVIDER_PATHS, gateway_config, start_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=PROVIDER_PATHS)
def gateway(
    request: pytest.FixtureRequest, sim: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    config = gateway_config(sim, {"chat": ["fast"]}, provider_path=request.param)
    proc, address = start_gateway(config, tmp_path_factory.mktemp(request.param))
    yield address
    assert proc.terminate() == 0, proc.output()


def ask(**fields: object) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model="chat",
        messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")],
        max_tokens=8,
        **fields,  # type: ignore[arg-type]
    )


async def test_n_answers_come_back_as_choices(gateway: str) -> None:
    async with grpc.aio.insecure_channel(gateway) as channel:
        reply = await pb_grpc.GatewayStub(channel).Complete(ask(n=3), timeout=20)
    assert len(reply.choices) == 3
    assert reply.message == reply.choices[0]
    assert all(choice.content for choice in reply.choices)
    # The three answers' tokens, as the provider counted them.
    assert reply.usage.output_tokens == 3 * 8


async def test_a_stream_of_several_answers_is_refused(gateway: str) -> None:
    async with grpc.aio.insecure_channel(gateway) as channel:
        call = pb_grpc.GatewayStub(channel).StreamComplete(ask(n=2), timeout=20)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [event async for event in call]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "n" in (caught.value.details() or "")


async def test_a_call_with_options_is_served_on_both_paths(gateway: str) -> None:
    extra = struct_pb2.Struct()
    extra.update({"service_tier": "default"})
    fields = {"user": "u-7", "logit_bias": {50256: -100.0}, "seed": 3, "extra_params": extra}
    async with grpc.aio.insecure_channel(gateway) as channel:
        reply = await pb_grpc.GatewayStub(channel).Complete(ask(**fields), timeout=20)
    assert reply.message.content
