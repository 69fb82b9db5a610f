"""Images through a real gateway: only deployments with vision take them, on both paths."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import PROVIDER_PATHS, gateway_config, start_gateway

pytestmark = pytest.mark.integration

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f"
    "15c4890000000d49444154789c63f8cfc0f01f00050001ff89993d1d0000000049454e44ae426082"
)


def image_request(model: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model,
        messages=[
            pb.Message(
                role=pb.ROLE_USER,
                parts=[
                    pb.ContentPart(text="What is in this picture?"),
                    pb.ContentPart(image=pb.ImagePart(data=PNG_1X1, media_type="image/png")),
                    pb.ContentPart(image=pb.ImagePart(url="https://example.com/cat.png")),
                ],
            )
        ],
        max_tokens=8,
    )


@pytest.fixture(scope="module", params=PROVIDER_PATHS)
def gateway(
    request: pytest.FixtureRequest, sim: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    config = gateway_config(
        sim,
        {"mixed": ["fast", "medium"], "blind": ["slow"]},
        router_settings={"routing_strategy": "simple-shuffle", "num_retries": 0},
        provider_path=request.param,
    )
    vision = {"mixed-fast": True, "mixed-medium": False, "blind-slow": False}
    for entry in config["model_list"]:  # type: ignore[attr-defined]
        entry["model_info"]["supports_vision"] = vision[entry["model_info"]["id"]]
    proc, address = start_gateway(config, tmp_path_factory.mktemp(request.param))
    yield address
    assert proc.terminate() == 0, proc.output()


async def test_image_requests_go_only_to_deployments_with_vision(gateway: str) -> None:
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = pb_grpc.GatewayStub(channel)
        answered = Counter(
            [
                (await stub.Complete(image_request("mixed"), timeout=20)).deployment
                for _ in range(12)
            ]
        )
        assert answered == {"mixed-fast": 12}
        text = pb.CompleteRequest(
            model="mixed", messages=[pb.Message(role=pb.ROLE_USER, content="hi")], max_tokens=8
        )
        # Text goes anywhere: shuffled over both.
        either = {(await stub.Complete(text, timeout=20)).deployment for _ in range(30)}
        assert either == {"mixed-fast", "mixed-medium"}


async def test_a_group_without_vision_refuses_images_naming_why(gateway: str) -> None:
    async with grpc.aio.insecure_channel(gateway) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.GatewayStub(channel).Complete(image_request("blind"), timeout=20)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes images" in (caught.value.details() or "")
