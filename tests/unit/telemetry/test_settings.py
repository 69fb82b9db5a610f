"""Which signals are exported where: the config, then the OTEL_* variables, else nothing."""

from __future__ import annotations

import pytest

from switchboard.telemetry import TelemetrySettings, build_telemetry, plan_export


def test_nothing_configured_exports_nothing() -> None:
    plan = plan_export(TelemetrySettings(), {})
    assert not plan.enabled
    telemetry = build_telemetry(plan)
    assert not telemetry.enabled
    assert telemetry.tracer is None
    assert telemetry.meter is None


def test_the_standard_variables_turn_export_on() -> None:
    plan = plan_export(
        TelemetrySettings(),
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "OTEL_SERVICE_NAME": "gateway-eu",
        },
    )
    assert plan.traces_endpoint == plan.metrics_endpoint == "http://collector:4317"
    assert plan.service_name == "gateway-eu"
    assert plan.protocol == "grpc"


def test_per_signal_variables_and_none_exporters() -> None:
    plan = plan_export(
        TelemetrySettings(),
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
    )
    assert plan.traces_endpoint == "http://traces:4318"
    assert plan.metrics_endpoint is None
    assert plan.protocol == "http/protobuf"


def test_the_config_wins_over_the_environment() -> None:
    plan = plan_export(
        TelemetrySettings(otlp_endpoint="http://mine:4317", otlp_protocol="grpc"),
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://theirs:4317"},
    )
    assert plan.traces_endpoint == "http://mine:4317"


def test_sdk_disabled_turns_everything_off() -> None:
    plan = plan_export(
        TelemetrySettings(otlp_endpoint="http://mine:4317", prometheus_listen="127.0.0.1:0"),
        {"OTEL_SDK_DISABLED": "true"},
    )
    assert not plan.enabled


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="http/json"):
        plan_export(TelemetrySettings(), {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
