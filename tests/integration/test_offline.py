"""litellm never reaches for the internet: not at import, not per call.

A child process records every DNS lookup and socket connect through Python's
audit hooks while it imports the provider adapter and calls the simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

CHILD = textwrap.dedent(
    """
    import asyncio, ipaddress, json, sys

    seen = []

    def hook(event, args):
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple):
                seen.append(("connect", str(address[0])))
        elif event == "socket.getaddrinfo":
            seen.append(("lookup", str(args[0])))

    sys.addaudithook(hook)

    from switchboard.config import parse_settings
    from switchboard.domain import CompletionRequest, Message, Role
    from switchboard.providers.litellm_adapter import LitellmProvider

    settings = parse_settings(sys.argv[1], source="child", env={})
    deployment = settings.deployments[0]
    request = CompletionRequest(model="chat", messages=(Message(Role.USER, "hi"),))

    async def main():
        provider = LitellmProvider()
        assert provider.estimate_prompt_tokens(request) > 0
        answer = await provider.complete(deployment, request, timeout_s=20)
        stream = await provider.stream(deployment, request, timeout_s=20)
        chunks = [c async for c in stream]
        await stream.aclose()
        return answer.usage.output_tokens, len(chunks)

    tokens, chunks = asyncio.run(main())

    def local(host):
        if host in ("localhost",):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    outside = [entry for entry in seen if not local(entry[1])]
    print(json.dumps({"outside": outside, "tokens": tokens, "chunks": chunks, "seen": len(seen)}))
    """
)


def test_no_lookup_or_connection_leaves_the_machine(sim: str) -> None:
    config = f"""
model_list:
  - model_name: chat
    litellm_params: {{model: openai/instant, api_base: "{sim}", api_key: sim}}
"""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, config], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tokens"] > 0
    assert report["chunks"] > 0
    assert report["seen"] > 0  # the hook did see the simulator's connections
    assert report["outside"] == []
