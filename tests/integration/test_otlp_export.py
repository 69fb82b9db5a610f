"""Real OTLP over the network: gateway -> rotel (a real collector) -> an OTLP receiver.

The gateway exports to rotel, over OTLP/gRPC configured in its config file, or
over OTLP/HTTP configured by the standard OTEL_* variables; rotel forwards what
it received to a receiver run by this test, which decodes it. Spans and
metrics must arrive with their GenAI attributes, and no prompt anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .otlp_sink import OtlpSink, attributes
from .procs import Collector, gateway_config, start_gateway, start_rotel

pytestmark = pytest.mark.integration

PROMPT = "Say hi to the collector"


@pytest.fixture
async def sink() -> AsyncIterator[OtlpSink]:
    receiver = OtlpSink()
    await receiver.start()
    yield receiver
    await receiver.stop()


def _start_rotel(sink_port: int) -> Collector:
    """rotel forwarding everything it receives to the test's receiver."""
    return start_rotel(
        [
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink_port}",
            "--otlp-exporter-protocol", "grpc",
            "--batch-timeout", "100ms",
        ]
    )  # fmt: skip


@pytest.mark.parametrize("route", ["grpc-from-config", "http-from-otel-env"])
async def test_spans_and_metrics_reach_a_real_receiver(
    sim: str, sink: OtlpSink, tmp_path: Path, route: str
) -> None:
    collector = _start_rotel(sink.port)
    telemetry: dict[str, object] = {
        "service_name": "switchboard-e2e",
        "metric_export_interval_seconds": 0.5,
    }
    env: dict[str, str] = {}
    if route == "grpc-from-config":
        telemetry["otlp_endpoint"] = f"http://127.0.0.1:{collector.grpc_port}"
    else:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.http_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    config = gateway_config(sim, {"chat": ["instant"]}, switchboard={"telemetry": telemetry})
    # OTEL_* variables for the gateway process only, as an operator would set them.
    gateway, address = start_gateway(config, tmp_path, env=env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            request = pb.CompleteRequest(
                model="chat", messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)]
            )
            response = await stub.Complete(request, timeout=30)
            [event async for event in stub.StreamComplete(request, timeout=30)]

        def arrived(s: OtlpSink) -> bool:
            names = [span.name for span in s.spans()]
            wanted = {
                "gen_ai.client.operation.duration",
                "gen_ai.client.token.usage",
                "switchboard.requests",
            }
            return names.count("chat instant") >= 2 and wanted <= s.metric_names()

        await sink.wait_for(arrived)
    finally:
        assert gateway.terminate() == 0, gateway.output()
        collector.proc.terminate()

    spans = {span.name: span for span in sink.spans()}
    server = attributes(spans["switchboard.v1.Gateway/Complete"].attributes)
    assert server["switchboard.deployment"] == "chat-instant"
    assert server["rpc.grpc.status_code"] == 0
    attempt = attributes(spans["chat instant"].attributes)
    assert attempt["gen_ai.operation.name"] == "chat"
    assert attempt["gen_ai.provider.name"] == "openai"
    assert attempt["gen_ai.request.model"] == "instant"
    assert attempt["gen_ai.usage.input_tokens"] > 0
    assert "StreamComplete" in " ".join(spans)
    for span in sink.spans():
        assert PROMPT not in str(attributes(span.attributes))
    resources = [
        attributes(rs.resource.attributes)
        for request in sink.trace_requests
        for rs in request.resource_spans
    ]
    assert {r.get("service.name") for r in resources} == {"switchboard-e2e"}
    inputs = {
        attributes(span.attributes)["gen_ai.usage.input_tokens"]
        for span in sink.spans()
        if span.name == "chat instant"
    }
    assert response.usage.input_tokens in inputs
