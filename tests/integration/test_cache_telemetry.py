"""Cache hits and misses in spans and metrics, read from the SDK's in-memory exporters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.sim import SimProfile

from .test_telemetry_rpc import Rig, _attrs, _metric_points, serve_rig

pytestmark = pytest.mark.integration


def _config(base_url: str) -> str:
    return f"""
model_list:
  - model_name: chat
    litellm_params: {{model: openai/instant, api_base: "{base_url}", api_key: sim}}
    model_info: {{id: chat-instant}}
switchboard:
  cache: {{}}
"""


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with serve_rig({"instant": SimProfile()}, _config) as served:
        yield served


def _server_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is SpanKind.SERVER]


async def test_a_hit_is_on_the_span_and_counted_with_the_cost_it_saved(rig: Rig) -> None:
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")]
    )
    first = await rig.stub.Complete(request, timeout=30)
    await rig.finished()
    rig.server_ended.event.clear()
    second = await rig.stub.Complete(request, timeout=30)
    assert second.cache_hit
    spans = await rig.finished()
    miss_span, hit_span = sorted(_server_spans(spans), key=lambda s: s.start_time or 0)
    assert _attrs(miss_span)["switchboard.cache.hit"] is False
    assert "switchboard.cache.kind" not in _attrs(miss_span)
    hit = _attrs(hit_span)
    assert hit["switchboard.cache.hit"] is True
    assert hit["switchboard.cache.kind"] == "exact"
    assert hit["switchboard.cache.similarity"] == 1.0
    assert hit["switchboard.cache.cost_saved_usd"] == pytest.approx(first.cost_usd)
    assert hit["switchboard.cost.usd"] == 0
    # The hit made no upstream attempt.
    assert len([s for s in spans if s.kind is SpanKind.CLIENT]) == 1
    points = _metric_points(rig.metrics)
    lookups = {
        (p.attributes["switchboard.cache.kind"], p.attributes["switchboard.cache.result"]): p.value
        for p in points["switchboard.cache.lookups"]
    }
    assert lookups == {("exact", "miss"): 1, ("exact", "hit"): 1}
    (saved,) = points["switchboard.cache.cost_saved"]
    assert saved.attributes["switchboard.model_group"] == "chat"
    assert saved.value == pytest.approx(first.cost_usd)
    outcomes = {
        p.attributes["switchboard.cache.hit"]: p.value for p in points["switchboard.requests"]
    }
    assert outcomes == {False: 1, True: 1}
