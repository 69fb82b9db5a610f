"""grpcurl (from PyPI, in .venv/bin) against the running server, through reflection only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GRPCURL = Path(sys.executable).parent / "grpcurl"
HELLO = {"model": "chat", "messages": [{"role": "ROLE_USER", "content": "Say hi"}]}


def grpcurl(address: str, *args: str, data: object = None) -> subprocess.CompletedProcess[str]:
    command = [str(GRPCURL), "-plaintext", "-max-time", "30"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run(
        [*command, address, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_list_shows_gateway_health_and_reflection(gateway: str) -> None:
    result = grpcurl(gateway, "list")
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {"switchboard.v1.Gateway", "grpc.health.v1.Health"} <= services
    assert any("ServerReflection" in s for s in services)


def test_describe_shows_the_three_rpcs(gateway: str) -> None:
    result = grpcurl(gateway, "describe", "switchboard.v1.Gateway")
    assert result.returncode == 0, result.stderr
    for rpc in ("rpc Complete", "rpc StreamComplete", "rpc ListModels"):
        assert rpc in result.stdout


def test_complete_through_reflection(gateway: str) -> None:
    result = grpcurl(gateway, "switchboard.v1.Gateway/Complete", data=HELLO)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["message"]["content"]
    assert int(body["usage"]["input_tokens"]) > 0
    assert body["deployment"].startswith("chat-")


def test_stream_through_reflection(gateway: str) -> None:
    result = grpcurl(gateway, "switchboard.v1.Gateway/StreamComplete", data=HELLO)
    assert result.returncode == 0, result.stderr
    decoder, text, events = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].strip()
    assert len([e for e in events if "delta" in e]) >= 3
    assert [e for e in events if "final" in e] == events[-1:]
    assert events[-1]["final"]["usage"]


def test_errors_show_their_details(gateway: str) -> None:
    result = grpcurl(gateway, "switchboard.v1.Gateway/Complete", data={"model": "chat"})
    assert result.returncode != 0
    assert "Code: InvalidArgument" in result.stderr
    assert "google.rpc.BadRequest" in result.stderr
    assert '"field":"messages"' in result.stderr.replace(" ", "")
