"""A minimal OTLP/gRPC receiver: what a collector forwards lands here, decoded, for assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def attributes(values: Any) -> dict[str, Any]:
    """OTLP KeyValues -> a plain dict."""
    out: dict[str, Any] = {}
    for kv in values:
        out[kv.key] = _value(kv.value)
    return out


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


class OtlpSink(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    def __init__(self) -> None:
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self._changed = asyncio.Condition()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    async def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        async with self._changed:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.trace_requests.append(request)
                reply: Any = trace_service_pb2.ExportTraceServiceResponse()
            else:
                self.metric_requests.append(request)
                reply = metrics_service_pb2.ExportMetricsServiceResponse()
            self._changed.notify_all()
        return reply

    def spans(self) -> Iterator[trace_pb2.Span]:
        for request in self.trace_requests:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    yield from scope_spans.spans

    def metric_names(self) -> set[str]:
        return {
            metric.name
            for request in self.metric_requests
            for resource_metrics in request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }

    async def wait_for(self, predicate: Callable[[OtlpSink], bool], within_s: float = 20) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        await asyncio.wait_for(wait(), within_s)
