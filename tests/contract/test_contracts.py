"""Per-provider contracts over real HTTP: what litellm sends, and what the gateway answers.

One gateway (a real gRPC server on a loopback port, the fast path off so
every call goes through litellm) serves one model group per provider, each
pointed at a capture server that plays that provider (`capture.py`). Each
canonical call (`canonical.py`) goes through gRPC; the test then holds the
one request the capture server recorded to the provider's pinned contract
(`contracts.py`, `checks.py`) and the gateway's answer to the facts the
capture server answered: text, tool call, structured answer, finish reason,
token counts.

Modes: one test function per mode, parametrized by provider: plain, tools,
stream, json_schema (a `response_format` with a JSON Schema, the answer
validated by the gateway and here) and image (a text part and an inline PNG).
A new mode is a `Mode` member, its request and reply in `canonical.py`, its
`changes` entry in each contract, and a test function here.

Nothing leaves loopback: a guard refuses any lookup or connection to another
host while the module runs; each test fails on what it tried
(`stayed_local`), and the module on anything left over.

Known defects are `KNOWN`: strict xfails, each raising its own exception so
that nothing else in the test is excused.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import grpc
import pytest
import pytest_asyncio
import yaml

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.server import GatewayServer
from switchboard.app import build_gateway
from switchboard.config import Address, parse_settings

from .canonical import (
    ANSWER,
    ANSWER_SCHEMA,
    IMAGE_ANSWER,
    JSON_ANSWER,
    REPLIES,
    TOOL_ARGUMENTS,
    TOOL_NAME,
    Mode,
    request,
)
from .capture import CaptureLoop, CaptureServer, Recorded, Reply
from .checks import check_request, check_structured_answer
from .contracts import CONTRACTS, Contract

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CALL_TIMEOUT_S = 15.0
UPSTREAM_TIMEOUT_S = 10


def _local(host: object) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def offline() -> Iterator[list[str]]:
    """Refuse lookups and connections beyond loopback; what was refused, checked at the end."""
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _local(host):
            refused.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, "refused by the contract tests")
        return real_getaddrinfo(host, *args, **kwargs)

    def guard(address: Any) -> None:
        if isinstance(address, tuple) and not _local(address[0]):
            refused.append(f"connect {address[0]}")
            raise ConnectionRefusedError("refused by the contract tests")

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield refused
    assert refused == [], "the contract tests reached beyond loopback"


class ReachedBeyondLoopback(AssertionError):
    pass


class WrongFinishReason(AssertionError):
    pass


def stayed_local(refused: list[str]) -> None:
    """Nothing the test did reached beyond loopback; what it tried is its failure, not the
    module's."""
    tried, refused[:] = refused[:], []
    if tried:
        raise ReachedBeyondLoopback(f"the call reached beyond loopback: {tried}")


@pytest.fixture(scope="module")
def servers(offline: list[str]) -> Iterator[dict[str, CaptureServer]]:
    """One capture server per provider, on a loop of their own."""
    with CaptureLoop() as loop:
        started = {c.name: CaptureServer(c.persona) for c in CONTRACTS}
        for server in started.values():
            loop.run(server.start())
        yield started
        for server in started.values():
            loop.run(server.stop())


def gateway_config(servers: dict[str, CaptureServer]) -> dict[str, Any]:
    """LiteLLM's proxy format: one model group per provider, named as the contract."""
    return {
        "model_list": [
            {
                "model_name": c.name,
                "litellm_params": {
                    "model": c.model,
                    **c.params(servers[c.name].base_url),
                    "timeout": UPSTREAM_TIMEOUT_S,
                },
                "model_info": {"id": c.name},
            }
            for c in CONTRACTS
        ],
        "router_settings": {"num_retries": 0},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(servers: dict[str, CaptureServer]) -> AsyncIterator[pb_grpc.GatewayStub]:
    settings = parse_settings(yaml.safe_dump(gateway_config(servers)), source="contract", env={})
    assert not settings.providers.fast_path, "every call must go through litellm"
    server = GatewayServer(build_gateway(settings), clock=time.monotonic, max_concurrent_calls=8)
    port = await server.start(Address("127.0.0.1", 0))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.GatewayStub(channel)
    finally:
        await server.stop(0)


def _failed(exc: grpc.aio.AioRpcError, recorded: list[Recorded]) -> NoReturn:
    pytest.fail(f"the gateway answered {exc.code()}: {exc.details()}; the server saw {recorded}")


async def complete(
    stub: pb_grpc.GatewayStub, server: CaptureServer, contract: Contract, mode: Mode
) -> tuple[pb.CompleteResponse, list[Recorded]]:
    recorded = server.expect(REPLIES[mode])
    try:
        response = await stub.Complete(request(contract.name, mode), timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        _failed(exc, recorded)
    return response, recorded


def assert_usage(usage: pb.Usage, reply: Reply) -> None:
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        reply.input_tokens,
        reply.output_tokens,
        reply.input_tokens + reply.output_tokens,
    )
    assert usage.cached_input_tokens == 0


# (mode, provider) -> a strict xfail naming a known defect; none today. The last two
# (Anthropic's beta-headers fetch, Groq's finish reason on a forced JSON tool) were
# mended in server/switchboard/providers (litellm_adapter.py, openai_wire.py).
KNOWN: dict[tuple[Mode, str], pytest.MarkDecorator] = {}


def providers(mode: Mode) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "contract",
        [pytest.param(c, id=c.name, marks=KNOWN.get((mode, c.name), ())) for c in CONTRACTS],
    )


@providers(Mode.PLAIN)
async def test_plain(
    stub: pb_grpc.GatewayStub,
    servers: dict[str, CaptureServer],
    offline: list[str],
    contract: Contract,
) -> None:
    response, recorded = await complete(stub, servers[contract.name], contract, Mode.PLAIN)

    check_request(contract, Mode.PLAIN, recorded)
    assert response.deployment == contract.name
    assert response.message.role == pb.ROLE_ASSISTANT
    assert response.message.content == ANSWER
    assert list(response.message.tool_calls) == []
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert_usage(response.usage, REPLIES[Mode.PLAIN])
    stayed_local(offline)


@providers(Mode.TOOLS)
async def test_tools(
    stub: pb_grpc.GatewayStub,
    servers: dict[str, CaptureServer],
    offline: list[str],
    contract: Contract,
) -> None:
    response, recorded = await complete(stub, servers[contract.name], contract, Mode.TOOLS)

    check_request(contract, Mode.TOOLS, recorded)
    assert response.message.content == ""
    [call] = response.message.tool_calls
    assert call.name == TOOL_NAME
    assert json.loads(call.arguments) == TOOL_ARGUMENTS
    if contract.tool_call_id is None:
        assert call.id, "litellm makes up an id when the provider sends none"
    else:
        assert call.id == contract.tool_call_id
    assert response.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert_usage(response.usage, REPLIES[Mode.TOOLS])
    stayed_local(offline)


@providers(Mode.STREAM)
async def test_stream(
    stub: pb_grpc.GatewayStub,
    servers: dict[str, CaptureServer],
    offline: list[str],
    contract: Contract,
) -> None:
    recorded = servers[contract.name].expect(REPLIES[Mode.STREAM])
    try:
        events = [
            e
            async for e in stub.StreamComplete(
                request(contract.name, Mode.STREAM), timeout=CALL_TIMEOUT_S
            )
        ]
    except grpc.aio.AioRpcError as exc:
        _failed(exc, recorded)

    check_request(contract, Mode.STREAM, recorded)
    *deltas, last = events
    assert all(e.WhichOneof("event") == "delta" for e in deltas)
    assert "".join(e.delta.content for e in deltas) == ANSWER
    assert not any(e.delta.tool_calls for e in deltas)
    assert last.WhichOneof("event") == "final"
    assert last.final.deployment == contract.name
    assert last.final.finish_reason == pb.FINISH_REASON_STOP
    assert_usage(last.final.usage, REPLIES[Mode.STREAM])
    stayed_local(offline)


@providers(Mode.JSON_SCHEMA)
async def test_json_schema(
    stub: pb_grpc.GatewayStub,
    servers: dict[str, CaptureServer],
    offline: list[str],
    contract: Contract,
) -> None:
    response, recorded = await complete(stub, servers[contract.name], contract, Mode.JSON_SCHEMA)

    check_request(contract, Mode.JSON_SCHEMA, recorded)
    assert response.deployment == contract.name
    check_structured_answer(response.message.content, ANSWER_SCHEMA, JSON_ANSWER)
    assert list(response.message.tool_calls) == []
    assert_usage(response.usage, REPLIES[Mode.JSON_SCHEMA])
    # validate_json was on: the gateway found the answer conforming.
    assert [(a.deployment, a.outcome) for a in response.attempts] == [
        (contract.name, pb.ATTEMPT_OUTCOME_SUCCESS)
    ]
    if response.finish_reason != pb.FINISH_REASON_STOP:
        raise WrongFinishReason(pb.FinishReason.Name(response.finish_reason))
    stayed_local(offline)


@providers(Mode.IMAGE)
async def test_image(
    stub: pb_grpc.GatewayStub,
    servers: dict[str, CaptureServer],
    offline: list[str],
    contract: Contract,
) -> None:
    response, recorded = await complete(stub, servers[contract.name], contract, Mode.IMAGE)

    check_request(contract, Mode.IMAGE, recorded)
    assert response.deployment == contract.name
    assert response.message.content == IMAGE_ANSWER
    assert list(response.message.tool_calls) == []
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert_usage(response.usage, REPLIES[Mode.IMAGE])
    stayed_local(offline)
