"""Tracer and meter providers built from an export plan, owned by one `Telemetry` object.

Providers are created here, never installed as globals: the recorder and the
interceptor receive the tracer and meter they use, so tests can build as many
independent instances as they like (with in-memory exporters) in one process.
Spans leave through a `BatchSpanProcessor` and metrics through a periodic
reader, both on their own threads, so the call path never waits on export.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from switchboard import __version__
from switchboard.telemetry.settings import GRPC, ExportPlan

log = logging.getLogger(__name__)
SCOPE = "switchboard"


@dataclass
class Telemetry:
    """A tracer and a meter, or none when nothing is exported (the call path then skips them)."""

    tracer: trace.Tracer | None = None
    meter: metrics.Meter | None = None
    capture_content: bool = False
    # The Prometheus endpoint's bound port (the config may ask for port 0).
    prometheus_port: int | None = None
    _tracer_provider: TracerProvider | None = None
    _meter_provider: MeterProvider | None = None
    _closers: list[object] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None or self.meter is not None

    def shutdown(self) -> None:
        """Flush what is buffered and stop the export threads."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()
        for closer in self._closers:
            shutdown = getattr(closer, "shutdown", None)
            if callable(shutdown):
                shutdown()


def build_telemetry(
    plan: ExportPlan,
    *,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Providers for what `plan` exports, plus any processors/readers a test adds."""
    tracing = bool(plan.traces_endpoint or span_processors)
    metering = bool(plan.metrics_endpoint or plan.prometheus_listen or metric_readers)
    if not (tracing or metering):
        return Telemetry(capture_content=plan.capture_content)
    resource = Resource.create({SERVICE_NAME: plan.service_name, SERVICE_VERSION: __version__})
    telemetry = Telemetry(capture_content=plan.capture_content)
    if tracing:
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(plan.sampling_ratio))
        )
        if plan.traces_endpoint:
            provider.add_span_processor(BatchSpanProcessor(_span_exporter(plan)))
        for processor in span_processors:
            provider.add_span_processor(processor)
        telemetry._tracer_provider = provider
        telemetry.tracer = provider.get_tracer(SCOPE, __version__)
    if metering:
        readers = list(metric_readers)
        if plan.metrics_endpoint:
            readers.append(
                PeriodicExportingMetricReader(
                    _metric_exporter(plan),
                    export_interval_millis=plan.metric_export_interval_s * 1000,
                )
            )
        if plan.prometheus_listen:
            readers.append(_prometheus(plan.prometheus_listen, telemetry))
        # Exemplars cost an offer per measurement on the call path; traces already
        # carry the per-call detail they would point to.
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, exemplar_filter=AlwaysOffExemplarFilter()
        )
        telemetry._meter_provider = meter_provider
        telemetry.meter = meter_provider.get_meter(SCOPE, __version__)
    return telemetry


def _span_exporter(plan: ExportPlan) -> SpanExporter:
    # Config headers, or None so the exporter reads OTEL_EXPORTER_OTLP_[TRACES_]HEADERS;
    # certificates, timeout and compression it always reads from the environment.
    headers = dict(plan.headers) or None
    if plan.protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=plan.traces_endpoint, headers=headers, insecure=plan.traces_insecure
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=plan.traces_endpoint, headers=headers)


def _metric_exporter(plan: ExportPlan) -> MetricExporter:
    headers = dict(plan.headers) or None
    if plan.protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=plan.metrics_endpoint, headers=headers, insecure=plan.metrics_insecure
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=plan.metrics_endpoint, headers=headers)


def _prometheus(listen: str, telemetry: Telemetry) -> MetricReader:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    telemetry._closers.append(server)
    telemetry.prometheus_port = server.server_port
    log.info("prometheus metrics on http://%s:%d/metrics", host, server.server_port)
    return reader
