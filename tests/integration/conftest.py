"""Fixtures that start the simulator and the gateway as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import PROVIDER_PATHS, Proc, gateway_config, start_gateway, start_sim

# A deliberately slow streamer for tests that need a stream in flight.
TEST_PROFILES = {
    "trickle": {"ttft_ms": 10, "tokens_per_second": 25, "min_output_tokens": 40,
                "max_output_tokens": 40},
}  # fmt: skip


@pytest.fixture(scope="module", params=PROVIDER_PATHS)
def provider_path(request: pytest.FixtureRequest) -> str:
    """Run a module's tests once through litellm and once through the fast path."""
    path: str = request.param
    return path


@pytest.fixture(scope="session")
def profiles_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "profiles.yaml"
    path.write_text(yaml.safe_dump(TEST_PROFILES))
    return path


@pytest.fixture(scope="session")
def sim(profiles_file: Path) -> Iterator[str]:
    """The simulator's base URL; one process for the session."""
    proc, url = start_sim(profiles_file)
    yield url
    proc.terminate()


@pytest.fixture(scope="module")
def gateway(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway serving group `chat` (two instant deployments) and `trickle`."""
    config = gateway_config(
        sim,
        {"chat": ["instant", "fast"], "trickle": ["trickle"]},
        switchboard={"aliases": {"quick": "chat"}},
    )
    proc, address = start_gateway(config, tmp_path_factory.mktemp("gw"))
    yield address
    assert proc.terminate() == 0, proc.output()


@pytest.fixture
def channel(gateway: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.GatewayStub:
    return pb_grpc.GatewayStub(channel)


__all__ = ["Proc", "gateway_config", "start_gateway", "start_sim"]
