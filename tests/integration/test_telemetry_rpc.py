"""Spans and metrics of real calls, read from the SDK's in-memory exporters.

The gateway and the simulator run in this process on loopback ports, so the
exporters can be handed in; the calls go over real gRPC and real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.server import GatewayServer
from switchboard.app import build_gateway
from switchboard.config import Address, parse_settings
from switchboard.sim import SimProfile, SimServer
from switchboard.sim.faults import FaultRates
from switchboard.telemetry import ServerSpans, TelemetrySettings, build_telemetry, plan_export

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SECRET_PROMPT = "my card number is 4111 1111 1111 1111"


class ServerEnded(SpanProcessor):
    """Set once a server span has ended: grpc sends an aborted call's status before
    the handler (and its span) finishes, so the client can hear before the span ends."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind is SpanKind.SERVER:
            self.event.set()


@dataclass
class Rig:
    stub: pb_grpc.GatewayStub
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    server_ended: ServerEnded

    async def finished(self) -> list[ReadableSpan]:
        """The spans, once the call's server span has ended."""
        await asyncio.wait_for(self.server_ended.event.wait(), 10)
        return list(self.spans.get_finished_spans())


def _config(base_url: str) -> str:
    return f"""
model_list:
  - model_name: chat
    litellm_params: {{model: openai/instant, api_base: "{base_url}", api_key: sim}}
    model_info: {{id: chat-instant}}
  - model_name: down
    litellm_params: {{model: openai/outage, api_base: "{base_url}", api_key: sim}}
    model_info: {{id: down-outage}}
router_settings:
  num_retries: 0
  fallbacks: [{{down: [chat]}}]
switchboard:
  routing: {{allow_fault_injection: true}}
"""


@contextlib.asynccontextmanager
async def serve_rig(
    profiles: dict[str, SimProfile], config: Callable[[str], str]
) -> AsyncIterator[Rig]:
    """A simulator with `profiles` and a gateway serving `config(simulator_url)`,
    its spans and metrics kept in memory."""
    sim = SimServer(profiles, default_profile="instant", rng=random.Random(1))
    await sim.start()
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    server_ended = ServerEnded()
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}),
        span_processors=[SimpleSpanProcessor(spans), server_ended],
        metric_readers=[metrics],
    )
    settings = parse_settings(config(sim.base_url), source="test", env={})
    gateway = build_gateway(settings, telemetry=telemetry)
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


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    profiles = {
        "instant": SimProfile(),
        "outage": SimProfile(faults=FaultRates(unavailable=1.0)),
    }
    async with serve_rig(profiles, _config) as served:
        yield served


def _request(model: str = "chat", content: str = "Say hi") -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model,
        messages=[pb.Message(role=pb.ROLE_USER, content=content)],
        max_tokens=16,
        temperature=0.5,
    )


def _one(spans: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is kind]
    return span


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


async def test_a_plain_complete(rig: Rig) -> None:
    response = await rig.stub.Complete(_request(content=SECRET_PROMPT), timeout=30)
    spans = await rig.finished()
    server, client = _one(spans, SpanKind.SERVER), _one(spans, SpanKind.CLIENT)
    assert server.name == "switchboard.v1.Gateway/Complete"
    assert client.name == "chat instant"
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    attempt = _attrs(client)
    assert attempt["gen_ai.operation.name"] == "chat"
    assert attempt["gen_ai.provider.name"] == "openai"
    assert attempt["gen_ai.request.model"] == "instant"
    assert attempt["gen_ai.request.max_tokens"] == 16
    assert attempt["gen_ai.request.temperature"] == 0.5
    assert attempt["gen_ai.response.id"] == response.id
    assert attempt["gen_ai.response.model"] == response.model
    assert attempt["gen_ai.response.finish_reasons"] == ("length",) or attempt[
        "gen_ai.response.finish_reasons"
    ] == ("stop",)
    assert attempt["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    assert attempt["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    assert attempt["server.address"] == "127.0.0.1"
    assert isinstance(attempt["server.port"], int)
    assert "error.type" not in attempt
    call = _attrs(server)
    assert call["rpc.grpc.status_code"] == 0
    assert call["switchboard.deployment"] == "chat-instant"
    assert call["switchboard.routing.strategy"] == "latency-based-routing"
    assert call["switchboard.routing.explored"] is True  # the first call probes
    assert call["switchboard.routing.candidates"] == ("chat-instant",)
    assert call["switchboard.ratelimit.wait_ms"] == 0
    assert call["switchboard.cache.hit"] is False
    assert call["switchboard.fallback.depth"] == 0
    assert call["switchboard.cost.usd"] == pytest.approx(response.cost_usd)
    # Content capture is off: no prompt or completion anywhere on the spans.
    for span in spans:
        for value in _attrs(span).values():
            assert "card number" not in str(value)
            assert response.message.content not in str(value) or not response.message.content
    points = _metric_points(rig.metrics)
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.count == 1
    assert duration.attributes["switchboard.deployment"] == "chat-instant"
    usage = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert usage == {
        "input": response.usage.input_tokens,
        "output": response.usage.output_tokens,
    }
    (requests,) = points["switchboard.requests"]
    assert requests.attributes["switchboard.outcome"] == "success"


async def test_a_stream_complete_records_time_to_first_chunk(rig: Rig) -> None:
    events = [e async for e in rig.stub.StreamComplete(_request(), timeout=30)]
    final = events[-1].final
    spans = await rig.finished()
    server, client = _one(spans, SpanKind.SERVER), _one(spans, SpanKind.CLIENT)
    assert server.name == "switchboard.v1.Gateway/StreamComplete"
    assert client.name == "chat instant"
    assert "switchboard.time_to_first_chunk_ms" in _attrs(client)
    assert [e.name for e in client.events] == ["first_chunk"]
    assert _attrs(client)["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert _attrs(server)["switchboard.time_to_first_chunk_ms"] >= 0
    points = _metric_points(rig.metrics)
    assert points["switchboard.time_to_first_chunk"][0].count == 1


async def test_a_call_that_fell_back_has_two_attempt_spans(rig: Rig) -> None:
    response = await rig.stub.Complete(_request("down"), timeout=30)
    assert response.fallback_depth == 1
    spans = await rig.finished()
    attempts = sorted(
        (s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    assert [s.name for s in attempts] == ["chat outage", "chat instant"]
    failed, answered = attempts
    assert _attrs(failed)["error.type"] == "upstream_unavailable"
    assert failed.status.status_code is StatusCode.ERROR
    assert "error.type" not in _attrs(answered)
    server = _one(spans, SpanKind.SERVER)
    assert _attrs(server)["switchboard.fallback.depth"] == 1
    assert {failed.parent.span_id, answered.parent.span_id} == {server.context.span_id}  # type: ignore[union-attr]
    durations = _metric_points(rig.metrics)["gen_ai.client.operation.duration"]
    assert {p.attributes.get("error.type") for p in durations} == {None, "upstream_unavailable"}


async def test_an_error_returned_to_the_caller_marks_the_server_span(rig: Rig) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.Complete(_request("nope"), timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    server = _one(await rig.finished(), SpanKind.SERVER)
    assert _attrs(server)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert _attrs(server)["error.type"] == "model_not_found"
    (requests,) = _metric_points(rig.metrics)["switchboard.requests"]
    assert requests.attributes["switchboard.outcome"] == "model_not_found"


async def test_an_outage_answered_unavailable_is_an_error_span(rig: Rig) -> None:
    # The fallback fails too (injected): the outage reaches the caller, a server-side fault.
    fault = (("x-switchboard-fault", "unavailable@chat-instant"),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.stub.Complete(_request("down"), timeout=30, metadata=fault)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    spans = await rig.finished()
    server = _one(spans, SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR
    assert _attrs(server)["error.type"] == "all_deployments_failed"
    attempts = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 2
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)


async def test_a_trace_continues_from_the_callers_traceparent(rig: Rig) -> None:
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    await rig.stub.Complete(_request(), timeout=30, metadata=(("traceparent", traceparent),))
    spans = await rig.finished()
    server = _one(spans, SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.parent.is_remote
    assert all(format(s.context.trace_id, "032x") == TRACE_ID for s in spans)


async def test_request_metadata_and_output_type_are_on_the_server_span(rig: Rig) -> None:
    request = _request()
    request.metadata["experiment"] = "b"
    request.metadata["ticket"] = "SUP-42"
    await rig.stub.Complete(request, timeout=30)
    server = _one(await rig.finished(), SpanKind.SERVER)
    call = _attrs(server)
    assert call["switchboard.metadata.experiment"] == "b"
    assert call["switchboard.metadata.ticket"] == "SUP-42"
    assert call["gen_ai.output.type"] == "text"
    # The prompt is not among them.
    assert not any("Say hi" in str(v) for v in call.values())
