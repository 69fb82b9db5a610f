"""Real OTLP over the network: gateway -> rotel (a real collector) -> an OTLP receiver.

The gateway exports to rotel, over OTLP/gRPC configured in its config file or
by per-signal OTEL_* variables, or over OTLP/HTTP configured by the standard
OTEL_* variables; rotel forwards what it received to a receiver run by this
test, which decodes it. Spans and metrics must arrive with their GenAI
attributes, and no prompt anywhere.

The exporter's TLS is then checked against receivers in this process, one
plaintext and one with a certificate made by `openssl`: each signal must pick
TLS or plaintext as the OTLP exporter specification says, and the certificate
variables must still reach the exporter.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.telemetry import TelemetrySettings, build_telemetry, plan_export

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


@pytest.mark.parametrize(
    "route", ["grpc-from-config", "grpc-from-signal-env", "http-from-otel-env"]
)
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
    elif route == "grpc-from-signal-env":
        # Plaintext both ways: http:// overrides INSECURE=false, and the scheme-less
        # metrics endpoint reads its own INSECURE variable; the general endpoint is unused.
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_INSECURE": "false",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{collector.grpc_port}",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"127.0.0.1:{collector.grpc_port}",
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true",
        }
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


class TlsOtlpSink(OtlpSink):
    """The same receiver behind TLS: a plaintext exporter cannot reach it."""

    def __init__(self, cert: bytes, key: bytes) -> None:
        super().__init__()
        self._credentials = grpc.ssl_server_credentials([(key, cert)])

    async def start(self) -> None:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, server)
        self.port = server.add_secure_port("127.0.0.1:0", self._credentials)
        await server.start()
        self._server = server


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, its own CA."""
    d = tmp_path_factory.mktemp("otlp-tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        cwd=d, check=True, capture_output=True,
    )  # fmt: skip
    return Cert(d / "cert.pem", d / "key.pem")


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The exporter reads os.environ itself: start each case from no OTEL_* at all."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    # A wrong TLS choice fails within this, not the default 10 s per signal.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    return monkeypatch


async def _export_a_span_and_a_metric() -> None:
    telemetry = build_telemetry(plan_export(TelemetrySettings(), os.environ))
    assert telemetry.tracer is not None
    assert telemetry.meter is not None
    with telemetry.tracer.start_as_current_span("tls probe"):
        pass
    telemetry.meter.create_counter("tls.probe").add(1)
    # Shutdown exports what is buffered, blocking: off the loop the receiver runs on.
    await asyncio.to_thread(telemetry.shutdown)


def _arrived(s: OtlpSink) -> bool:
    return [span.name for span in s.spans()] == ["tls probe"] and "tls.probe" in s.metric_names()


P = "127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("tls", "env"),
    [
        # http:// is plaintext even when every INSECURE variable says false.
        (
            False,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + P,
                "OTEL_EXPORTER_OTLP_INSECURE": "false",
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false",
                "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "false",
            },
        ),
        # Scheme-less: the signal's INSECURE variable, else the general one.
        (
            False,
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": P,
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": P,
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            },
        ),
        # Scheme-less and nothing said: TLS, trusting each signal's own certificate.
        (
            True,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": P,
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "{ca}",
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE": "{ca}",
            },
        ),
        # https:// is TLS even when INSECURE says true; the general certificate applies.
        (
            True,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://" + P,
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "{ca}",
            },
        ),
    ],
    ids=["http-beats-insecure-false", "schemeless-insecure", "schemeless-tls", "https-tls"],
)
async def test_each_signal_picks_tls_as_the_spec_says(
    tls: bool, env: dict[str, str], cert: Cert, clean_otel_env: pytest.MonkeyPatch
) -> None:
    receiver = TlsOtlpSink(cert.cert.read_bytes(), cert.key.read_bytes()) if tls else OtlpSink()
    await receiver.start()
    try:
        for name, value in env.items():
            clean_otel_env.setenv(name, value.format(port=receiver.port, ca=cert.cert))
        await _export_a_span_and_a_metric()
        await receiver.wait_for(_arrived, within_s=5)
    finally:
        await receiver.stop()


async def test_a_tls_receiver_refuses_the_plaintext_an_http_url_asks_for(
    cert: Cert, clean_otel_env: pytest.MonkeyPatch
) -> None:
    """The control for the TLS cases: the receiver really does refuse plaintext."""
    receiver = TlsOtlpSink(cert.cert.read_bytes(), cert.key.read_bytes())
    await receiver.start()
    try:
        clean_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
        clean_otel_env.setenv("OTEL_EXPORTER_OTLP_INSECURE", "false")
        clean_otel_env.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(cert.cert))
        await _export_a_span_and_a_metric()  # returns once export gave up
        assert receiver.trace_requests == []
        assert receiver.metric_requests == []
    finally:
        await receiver.stop()
