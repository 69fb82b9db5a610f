"""`switchboard serve` does its socket I/O on grpc's iomgr poller (api/polling.py).

grpc says which engine listens in its own trace log: iomgr's listener is
tcp_server_posix.cc, the EventEngine's posix_engine_listener.cc. An
operator's GRPC_EXPERIMENTS, even an empty one, is left alone.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import gateway_config, start_gateway

pytestmark = pytest.mark.integration

IOMGR_LISTENER = "tcp_server_posix.cc"
EVENT_ENGINE_LISTENER = "posix_engine_listener.cc"
TRACE = {"GRPC_VERBOSITY": "debug", "GRPC_TRACE": "tcp,event_engine_endpoint"}


@pytest.mark.parametrize(
    ("operator", "listener", "not_listener"),
    [
        (None, IOMGR_LISTENER, EVENT_ENGINE_LISTENER),
        ("", EVENT_ENGINE_LISTENER, IOMGR_LISTENER),
    ],
    ids=["default", "operator-set"],
)
async def test_the_port_is_served_by_the_chosen_io_engine(
    sim: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operator: str | None,
    listener: str,
    not_listener: str,
) -> None:
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    env = dict(TRACE) if operator is None else {**TRACE, "GRPC_EXPERIMENTS": operator}
    config = gateway_config(sim, {"chat": ["fast"]}, provider_path="fast-path")
    proc, address = start_gateway(config, tmp_path, env=env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await pb_grpc.GatewayStub(channel).Complete(
                pb.CompleteRequest(
                    model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")]
                ),
                timeout=10,
            )
        assert reply.message.content
    finally:
        assert proc.terminate() == 0
    output = proc.output()
    assert listener in output
    assert not_listener not in output
