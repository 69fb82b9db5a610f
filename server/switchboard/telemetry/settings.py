"""What to export and where: the config's `switchboard.telemetry`, then the `OTEL_*` variables.

Nothing is exported unless something asks for it: an OTLP endpoint (in the
config or in `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`), or a Prometheus
scrape address. `OTEL_SDK_DISABLED=true` turns everything off; an explicit
config value wins over the environment, as programmatic configuration does
in the OpenTelemetry SDKs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.config import TelemetrySettings

GRPC = "grpc"
HTTP = "http/protobuf"
PROTOCOLS = (GRPC, HTTP)


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The resolved decision: which signals go where."""

    service_name: str
    traces_endpoint: str | None
    metrics_endpoint: str | None
    protocol: str
    headers: Mapping[str, str]
    sampling_ratio: float
    capture_content: bool
    prometheus_listen: str | None
    metric_export_interval_s: float

    @property
    def enabled(self) -> bool:
        return bool(self.traces_endpoint or self.metrics_endpoint or self.prometheus_listen)


def plan_export(settings: TelemetrySettings, env: Mapping[str, str]) -> ExportPlan:
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"

    def endpoint(signal: str) -> str | None:
        if disabled or env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none":
            return None
        return (
            settings.otlp_endpoint
            or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or None
        )

    protocol = (
        (settings.otlp_protocol or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or GRPC).strip().lower()
    )
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return ExportPlan(
        service_name=env.get("OTEL_SERVICE_NAME") or settings.service_name,
        traces_endpoint=endpoint("TRACES"),
        metrics_endpoint=endpoint("METRICS"),
        protocol=protocol,
        headers=dict(settings.otlp_headers),
        sampling_ratio=settings.sampling_ratio,
        capture_content=settings.capture_content,
        prometheus_listen=None if disabled else settings.prometheus_listen,
        metric_export_interval_s=settings.metric_export_interval_s,
    )
