"""The OTLP exporter's TLS, decided per signal as the OTLP exporter specification says.

For OTLP/gRPC an `http://` or `https://` scheme decides and overrides every
INSECURE variable; a scheme-less endpoint reads the signal's INSECURE variable,
then the general one, and is secure otherwise. OTLP/HTTP takes a signal's own
URL as written and appends the signal's path only to the general endpoint.
"""

from __future__ import annotations

import pytest

from switchboard.telemetry import TelemetrySettings, plan_export
from switchboard.telemetry.settings import grpc_insecure

GENERAL = "OTEL_EXPORTER_OTLP_INSECURE"
TRACES = "OTEL_EXPORTER_OTLP_TRACES_INSECURE"
METRICS = "OTEL_EXPORTER_OTLP_METRICS_INSECURE"


@pytest.mark.parametrize(
    ("endpoint", "env", "insecure"),
    [
        # The scheme decides, whatever the variables say.
        ("http://collector:4317", {}, True),
        ("http://collector:4317", {GENERAL: "false", TRACES: "false"}, True),
        ("HTTP://collector:4317", {GENERAL: "false"}, True),
        ("https://collector:4317", {}, False),
        ("https://collector:4317", {GENERAL: "true", TRACES: "true"}, False),
        # No scheme: the signal's variable, then the general one, else secure.
        ("collector:4317", {}, False),
        ("127.0.0.1:4317", {}, False),
        ("collector:4317", {GENERAL: "true"}, True),
        ("collector:4317", {GENERAL: "TRUE"}, True),
        ("collector:4317", {TRACES: "true"}, True),
        ("collector:4317", {TRACES: "true", GENERAL: "false"}, True),
        ("collector:4317", {TRACES: "false", GENERAL: "true"}, False),
        ("collector:4317", {TRACES: "", GENERAL: "true"}, True),  # empty is unset
        ("collector:4317", {TRACES: "yes"}, False),  # only "true" is true
        ("collector:4317", {METRICS: "true"}, False),  # another signal's variable
        # A gRPC target scheme other than http(s) is not a URL scheme here.
        ("dns:///collector:4317", {GENERAL: "true"}, True),
        ("dns:///collector:4317", {}, False),
    ],
)
def test_grpc_insecure_decision_table(endpoint: str, env: dict[str, str], insecure: bool) -> None:
    assert grpc_insecure(endpoint, "TRACES", env) is insecure


def test_each_signal_is_decided_from_its_own_endpoint() -> None:
    plan = plan_export(
        TelemetrySettings(),
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4317",
        },
    )
    assert (plan.traces_insecure, plan.metrics_insecure) == (False, True)


def test_a_signal_endpoint_wins_over_the_general_one() -> None:
    plan = plan_export(
        TelemetrySettings(),
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://everything:4317",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "metrics:4317",
            METRICS: "true",
        },
    )
    assert plan.traces_endpoint == "https://everything:4317"
    assert plan.metrics_endpoint == "metrics:4317"
    assert (plan.traces_insecure, plan.metrics_insecure) == (False, True)


def test_the_config_endpoint_reads_the_insecure_variables_like_the_general_one() -> None:
    plan = plan_export(
        TelemetrySettings(otlp_endpoint="collector:4317"),
        {TRACES: "true", GENERAL: "false"},
    )
    assert plan.traces_endpoint == plan.metrics_endpoint == "collector:4317"
    assert (plan.traces_insecure, plan.metrics_insecure) == (True, False)


def test_a_plaintext_config_url_is_not_overridden_by_insecure_false() -> None:
    plan = plan_export(TelemetrySettings(otlp_endpoint="http://127.0.0.1:4317"), {GENERAL: "false"})
    assert (plan.traces_insecure, plan.metrics_insecure) == (True, True)


def test_otlp_http_appends_the_path_to_the_general_endpoint_only() -> None:
    plan = plan_export(
        TelemetrySettings(),
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4318/custom",
            GENERAL: "true",
        },
    )
    assert plan.traces_endpoint == "https://traces:4318/custom"
    assert plan.metrics_endpoint == "https://collector:4318/v1/metrics"
    # OTLP/HTTP has no insecure flag: the URL's scheme is the whole decision.
    assert (plan.traces_insecure, plan.metrics_insecure) == (False, False)


def test_otlp_http_config_endpoint_is_a_base_url() -> None:
    plan = plan_export(
        TelemetrySettings(otlp_endpoint="http://collector:4318", otlp_protocol="http/protobuf"),
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://ignored:4318/v1/traces"},
    )
    assert plan.traces_endpoint == "http://collector:4318/v1/traces"
    assert plan.metrics_endpoint == "http://collector:4318/v1/metrics"
