"""`make run-replicas` (tools/replicas.py): three replicas of the default config on one Redis."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from tests.redis_server import redis_server_binary

from .procs import Proc

pytestmark = pytest.mark.integration

TOOL = Path(__file__).resolve().parents[2] / "tools" / "replicas.py"


async def test_run_replicas_serves_the_default_config_on_three_replicas() -> None:
    redis_server_binary()  # skipped without redis-server, failed on CI
    proc = Proc(
        [sys.executable, str(TOOL)],
        ready=re.compile(r"3 replicas share limits"),
        stream="stdout",
    )
    try:
        addresses = re.findall(r"replica serving on (\S+:\d+)", "".join(proc.lines))
        assert len(addresses) == 3
        for address in addresses:
            async with grpc.aio.insecure_channel(address) as channel:
                reply = await pb_grpc.GatewayStub(channel).Complete(
                    pb.CompleteRequest(
                        model="fast", messages=[pb.Message(role=pb.ROLE_USER, content="hi")]
                    ),
                    timeout=20,
                )
            assert reply.deployment.startswith("chat-")
        output = proc.output()
        assert "shared through Redis" in output, output
    finally:
        proc.popen.send_signal(signal.SIGINT)
        assert proc.popen.wait(30) == 0, proc.output()
