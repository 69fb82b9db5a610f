"""A caller cannot slip past its key's rpm with deadlines shorter than the upstream.

Once a request has reached the provider, the provider counts it, whether or
not the caller waits for the answer. The gateway charges it the same way:
a timeout or a cancel after sending commits the request and its prompt, so
a key with rpm 2 gets at most 2 requests to the upstream in its window,
however many calls it gives up on. The simulator's own counter is the witness.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import PROVIDER_PATHS, gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

KEY = f"sk-short-{secrets.token_hex(12)}"
RPM = 2
CALLS = 20
UPSTREAM_LATENCY_MS = 400
DEADLINE_S = 0.1


@pytest.fixture(params=PROVIDER_PATHS)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({"sluggish": {"ttft_ms": UPSTREAM_LATENCY_MS}}))
    sim_proc, sim_url = start_sim(profiles)
    config = gateway_config(
        sim_url,
        {"chat": ["sluggish"]},
        router_settings={"max_queue_wait": 0, "num_retries": 0},
        switchboard={
            "limits": {"window_seconds": 600},
            "keys": [
                {
                    "name": "hasty",
                    "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                    "rpm": RPM,
                }
            ],
        },
        provider_path=request.param,
    )
    proc, address = start_gateway(config, tmp_path)
    try:
        yield address, sim_url
    finally:
        assert proc.terminate() == 0, proc.output()
        sim_proc.terminate()


def _upstream_requests(sim_url: str) -> int:
    base = sim_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{base}/sim/stats", timeout=5) as answer:
        return int(json.load(answer)["requests"])


def test_calls_that_give_up_early_still_count_against_the_key(
    setup: tuple[str, str],
) -> None:
    address, sim_url = setup
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="hello there")]
    )
    codes: list[grpc.StatusCode] = []
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        for _ in range(CALLS):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Complete(
                    request,
                    timeout=DEADLINE_S,
                    metadata=(("authorization", f"Bearer {KEY}"),),
                )
            codes.append(caught.value.code())
    assert _upstream_requests(sim_url) <= RPM
    # The first ones ran out of time at the upstream; the rest were refused by the key's limit.
    assert codes[:RPM] == [grpc.StatusCode.DEADLINE_EXCEEDED] * RPM
    assert set(codes[RPM:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
