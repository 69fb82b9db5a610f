"""An alias and an auto decision on the server span; a budget refusal's error type."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.trace import SpanKind

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.sim import SimProfile

from .test_telemetry_rpc import Rig, _attrs, serve_rig

pytestmark = pytest.mark.integration

KEY = "sk-spender-0123456789"


def _config(base_url: str) -> str:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    return f"""
model_list:
  - model_name: mini
    litellm_params: {{model: openai/instant, api_base: "{base_url}", api_key: sim}}
    model_info: {{id: mini, input_cost_per_token: 0.01, output_cost_per_token: 0.01}}
  - model_name: pro
    litellm_params: {{model: openai/instant, api_base: "{base_url}", api_key: sim}}
    model_info: {{id: pro, input_cost_per_token: 0.1, output_cost_per_token: 0.1}}
switchboard:
  aliases:
    auto: {{auto: {{simple: mini, hard: pro}}}}
  keys:
    - {{name: spender, sha256: {digest}, max_budget: 1.0, budget_duration: 1h}}
"""


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with serve_rig({"instant": SimProfile()}, _config) as served:
        yield served


def _ask(text: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model="auto", messages=[pb.Message(role=pb.ROLE_USER, content=text)], max_tokens=5
    )


async def test_the_auto_decision_is_on_the_span_and_a_refusal_names_the_budget(rig: Rig) -> None:
    auth = [("authorization", f"Bearer {KEY}")]
    answer = await rig.stub.Complete(_ask("Hi there"), metadata=auth, timeout=30)
    assert answer.routing.auto.tier == "simple"
    spans = await rig.finished()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    attributes = _attrs(server)
    assert attributes["switchboard.alias"] == "auto"
    assert attributes["switchboard.auto.tier"] == "simple"
    assert attributes["switchboard.auto.score"] == pytest.approx(answer.routing.auto.score)
    assert attributes["switchboard.auto.reason"] == answer.routing.auto.reason
    assert attributes["switchboard.model_group"] == "mini"
    # The prompt itself is not on the span (content capture is off).
    assert not any("Hi there" in str(v) for v in attributes.values())
    rig.server_ended.event.clear()
    # A proof goes to pro, whose worst case (about 10 tokens at $0.1) leaves no room.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.Complete(
            _ask("Prove that there are infinitely many primes, step by step, rigorously."),
            metadata=auth,
            timeout=30,
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    spans = await rig.finished()
    server = max((s for s in spans if s.kind is SpanKind.SERVER), key=lambda s: s.start_time or 0)
    attributes = _attrs(server)
    assert attributes["error.type"] == "budget_exceeded"
    assert attributes["switchboard.auto.tier"] == "hard"
    # One upstream attempt in all: the first call's; the refused one made none.
    assert len([s for s in spans if s.kind is SpanKind.CLIENT]) == 1
