"""Cache hits and misses in spans and metrics, read from the SDK's in-memory exporters."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.server import GatewayServer
from switchboard.app import build_gateway
from switchboard.config import Address, parse_settings
from switchboard.sim import SimProfile, SimServer
from switchboard.telemetry import ServerSpans, TelemetrySettings, build_telemetry, plan_export

from .test_telemetry_rpc import Rig, ServerEnded, _attrs, _metric_points

pytestmark = pytest.mark.integration


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = SimServer({"instant": SimProfile()}, default_profile="instant", rng=random.Random(1))
    await sim.start()
    spans, metrics, server_ended = InMemorySpanExporter(), InMemoryMetricReader(), ServerEnded()
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}),
        span_processors=[SimpleSpanProcessor(spans), server_ended],
        metric_readers=[metrics],
    )
    config = f"""
model_list:
  - model_name: chat
    litellm_params: {{model: openai/instant, api_base: "{sim.base_url}", api_key: sim}}
    model_info: {{id: chat-instant}}
switchboard:
  cache: {{}}
"""
    gateway = build_gateway(parse_settings(config, source="test", env={}), telemetry=telemetry)
    assert telemetry.tracer is not None
    server = GatewayServer(
        gateway,
        clock=time.monotonic,
        max_concurrent_calls=16,
        interceptors=[ServerSpans(telemetry.tracer)],
    )
    port = await server.start(Address("127.0.0.1", 0))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Rig(pb_grpc.GatewayStub(channel), spans, metrics, server_ended)
    await server.stop(0)
    telemetry.shutdown()
    await sim.stop()


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
