"""What to export and where: the config's `switchboard.telemetry`, then the `OTEL_*` variables.

Nothing is exported unless something asks for it: an OTLP endpoint (in the
config or in `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`), or a Prometheus
scrape address. `OTEL_SDK_DISABLED=true` turns everything off; an explicit
config value wins over the environment, as programmatic configuration does
in the OpenTelemetry SDKs. The config's `otlp_endpoint` otherwise stands where
`OTEL_EXPORTER_OTLP_ENDPOINT` would: a URL path is appended to it for OTLP/HTTP,
and its TLS is decided the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.config import TelemetrySettings

GRPC = "grpc"
HTTP = "http/protobuf"
PROTOCOLS = (GRPC, HTTP)

log = logging.getLogger(__name__)


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
    # OTLP/gRPC only: plaintext rather than TLS, decided per signal by `grpc_insecure`.
    # OTLP/HTTP needs no flag: its URL's scheme says.
    traces_insecure: bool = False
    metrics_insecure: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.traces_endpoint or self.metrics_endpoint or self.prometheus_listen)


def plan_export(settings: TelemetrySettings, env: Mapping[str, str]) -> ExportPlan:
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    protocol = (
        (settings.otlp_protocol or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or GRPC).strip().lower()
    )
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")

    def endpoint(signal: str) -> str | None:
        if disabled or env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none":
            return None
        # The config's endpoint wins over every variable, and is a general one.
        own = None if settings.otlp_endpoint else env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
        if own:
            return own  # a signal's own URL is used as written, OTLP/HTTP included
        general = settings.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not general:
            return None
        return http_signal_url(general, signal) if protocol == HTTP else general

    traces, metrics = endpoint("TRACES"), endpoint("METRICS")
    grpc = protocol == GRPC
    return ExportPlan(
        service_name=env.get("OTEL_SERVICE_NAME") or settings.service_name,
        traces_endpoint=traces,
        metrics_endpoint=metrics,
        protocol=protocol,
        headers=dict(settings.otlp_headers),
        sampling_ratio=settings.sampling_ratio,
        capture_content=settings.capture_content,
        prometheus_listen=None if disabled else settings.prometheus_listen,
        metric_export_interval_s=settings.metric_export_interval_s,
        traces_insecure=grpc and traces is not None and grpc_insecure(traces, "TRACES", env),
        metrics_insecure=grpc and metrics is not None and grpc_insecure(metrics, "METRICS", env),
    )


def grpc_insecure(endpoint: str, signal: str, env: Mapping[str, str]) -> bool:
    """Whether the OTLP/gRPC exporter of `signal` (TRACES or METRICS) dials without TLS.

    As the OTLP exporter specification says: an `http://` or `https://` scheme
    decides and takes precedence over the INSECURE settings; only a scheme-less
    endpoint reads `OTEL_EXPORTER_OTLP_{signal}_INSECURE`, then
    `OTEL_EXPORTER_OTLP_INSECURE`, and is secure when neither is set. The
    exporter library reads the same variables but lets `INSECURE=false` put TLS
    on an `http://` endpoint, so the decision is made here and passed to it.
    """
    scheme = endpoint.split("://", 1)[0].strip().lower() if "://" in endpoint else ""
    if scheme in ("http", "https"):
        return scheme == "http"
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"):
        value = env.get(name, "").strip().lower()
        if value:  # the spec reads an empty variable as unset
            if value not in ("true", "false"):
                log.warning("%s=%r is not true or false; read as false", name, value)
            return value == "true"
    return False


def http_signal_url(base: str, signal: str) -> str:
    """OTLP/HTTP's general endpoint is a base URL; the signal's path is appended as the spec says.

    A base already ending in the path is left alone, so a config written with
    the full URL keeps working.
    """
    suffix = f"/v1/{signal.lower()}"
    base = base.rstrip("/")
    return base if base.endswith(suffix) else base + suffix
