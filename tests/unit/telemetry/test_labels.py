"""Metric labels stay bounded by the config, whatever callers and providers send.

The recorder runs against the SDK's in-memory metric reader: a series is one
data point of one instrument, so counting data points counts series.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.config import Deployment
from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    ProviderResponse,
    Role,
    Usage,
)
from switchboard.errors import ModelNotFound, UpstreamRateLimited
from switchboard.routing.health import HealthState
from switchboard.telemetry import Recorder, TelemetrySettings, build_telemetry, plan_export

DEPLOYMENT = Deployment(
    id="chat-a",
    model_group="chat",
    model="openai/gpt-4o",
    provider="openai",
    params={"api_base": "http://127.0.0.1:9/v1"},
    rpm=100,
    tpm=None,
    timeout_s=10.0,
    stream_timeout_s=10.0,
    weight=None,
    max_input_tokens=None,
    max_output_tokens=None,
    input_cost_per_token=None,
    output_cost_per_token=None,
)
REQUEST = CompletionRequest(model="chat", messages=(Message(role=Role.USER, content="hi"),))


@dataclass
class _Health:
    state: HealthState = HealthState.HEALTHY


@dataclass
class _Status:
    health: _Health
    in_flight: int = 0
    requests_remaining: int | None = 100
    tokens_remaining: int | None = None


@dataclass
class Rig:
    recorder: Recorder
    metrics: InMemoryMetricReader
    spans: InMemorySpanExporter

    def series(self) -> dict[str, list[Any]]:
        """Every data point, by instrument name."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        points: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def count(self) -> int:
        return sum(len(points) for points in self.series().values())

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


@pytest.fixture
def rig() -> Iterator[Rig]:
    metrics = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}),
        span_processors=[SimpleSpanProcessor(spans)],
        metric_readers=[metrics],
    )
    ticks = iter(range(10**9))
    recorder = Recorder(telemetry, clock=lambda: float(next(ticks)))
    recorder.observe([DEPLOYMENT], lambda d: _Status(_Health()))
    yield Rig(recorder, metrics, spans)
    telemetry.shutdown()


def _answer(model: str) -> ProviderResponse:
    return ProviderResponse(
        id="resp-1",
        model=model,
        message=Message(role=Role.ASSISTANT, content="hello"),
        finish_reason=FinishReason.STOP,
        usage=Usage(input_tokens=3, output_tokens=2),
    )


def test_distinct_unknown_model_names_add_no_series(rig: Rig) -> None:
    rig.recorder.call_failed("no-such-model-0", ModelNotFound("no-such-model-0"))
    after_first = rig.count()
    assert after_first > 0
    for i in range(1, 100_000):
        name = f"no-such-model-{i}"
        rig.recorder.call_failed(name, ModelNotFound(name))
    assert rig.count() == after_first
    (requests,) = rig.series()["switchboard.requests"]
    assert requests.attributes["switchboard.model_group"] == "unknown"
    assert requests.value == 100_000


def test_a_configured_group_keeps_its_name(rig: Rig) -> None:
    rig.recorder.call_failed("chat", UpstreamRateLimited("429", deployment="chat-a"))
    rig.recorder.call_failed("nope", ModelNotFound("nope"))
    groups = {p.attributes["switchboard.model_group"] for p in rig.series()["switchboard.requests"]}
    assert groups == {"chat", "unknown"}


def test_errors_outside_the_error_tree_share_one_label(rig: Rig) -> None:
    for i in range(50):
        error = type(f"Odd{i}Error", (Exception,), {})()
        rig.recorder.call_failed("chat", error)
        attempt = rig.recorder.attempt(DEPLOYMENT, REQUEST, stream=False)
        attempt.failed(error)
    outcomes = {p.attributes["switchboard.outcome"] for p in rig.series()["switchboard.requests"]}
    assert outcomes == {"_OTHER"}
    durations = rig.series()["gen_ai.client.operation.duration"]
    assert {p.attributes["error.type"] for p in durations} == {"_OTHER"}
    # A span is one call, not a series: it keeps the class, for whoever debugs it.
    assert {s.attributes["error.type"] for s in rig.finished()} == {  # type: ignore[index]
        f"Odd{i}Error" for i in range(50)
    }


def test_a_provider_naming_any_model_adds_a_bounded_number_of_series(rig: Rig) -> None:
    models = ["gpt-4o", "gpt-4o-2024-08-06", *(f"made-up-{i}" for i in range(1_000))]
    for model in models:
        rig.recorder.attempt(DEPLOYMENT, REQUEST, stream=False).succeeded(_answer(model))
    durations = rig.series()["gen_ai.client.operation.duration"]
    labels = {p.attributes["gen_ai.response.model"] for p in durations}
    assert labels == {"gpt-4o", "gpt-4o-2024-08-06", "made-up-0", "made-up-1", "_OTHER"}
    assert sum(p.count for p in durations) == len(models)


def test_an_overlong_response_model_is_neither_a_label_nor_whole_on_the_span(rig: Rig) -> None:
    huge = "m" * 100_000
    rig.recorder.attempt(DEPLOYMENT, REQUEST, stream=False).succeeded(_answer(huge))
    (duration,) = rig.series()["gen_ai.client.operation.duration"]
    assert duration.attributes["gen_ai.response.model"] == "_OTHER"
    (span,) = rig.finished()
    assert len(str(span.attributes["gen_ai.response.model"])) <= 257  # type: ignore[index]


def test_a_failed_attempt_span_names_the_kind_never_the_provider_text(rig: Rig) -> None:
    secret = "Rate limit reached for organization org-abc123 (sk-abc...wxyz)"
    rig.recorder.attempt(DEPLOYMENT, REQUEST, stream=False).failed(
        UpstreamRateLimited(secret, deployment="chat-a")
    )
    (span,) = rig.finished()
    assert span.status.description == "UPSTREAM_RATE_LIMITED"
    for value in (span.attributes or {}).values():
        assert "org-abc123" not in str(value)
        assert "sk-abc" not in str(value)


def test_without_observe_no_group_is_known() -> None:
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}), metric_readers=[reader := InMemoryMetricReader()]
    )
    recorder = Recorder(telemetry, clock=lambda: 0.0)
    recorder.call_failed("chat", ModelNotFound("chat"))
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = [m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics]
    assert metric.data.data_points[0].attributes["switchboard.model_group"] == "unknown"
    telemetry.shutdown()


def test_shared_limit_decisions_and_fallbacks_are_counted_by_who_decided() -> None:
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}), metric_readers=[reader := InMemoryMetricReader()]
    )
    recorder = Recorder(telemetry, clock=lambda: 0.0)
    decisions = {"redis": 7, "remembered": 3, "local": 1, "outage": 2}
    recorder.observe_sharing(lambda: decisions, lambda: 1)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    by = {
        p.attributes["switchboard.ratelimit.decided_by"]: p.value
        for p in metrics["switchboard.ratelimit.decisions"].data.data_points
    }
    assert by == decisions
    (lost,) = metrics["switchboard.ratelimit.redis.fallbacks"].data.data_points
    assert lost.value == 1
    telemetry.shutdown()


def test_the_callers_key_metadata_and_json_output_are_recorded() -> None:
    from opentelemetry import trace

    from switchboard.domain import Caller, FormatKind, ResponseFormat

    spans = InMemorySpanExporter()
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}), span_processors=[SimpleSpanProcessor(spans)]
    )
    recorder = Recorder(telemetry, clock=lambda: 0.0)
    request = CompletionRequest(
        model="chat",
        messages=(Message(Role.USER, "a prompt that stays out"),),
        metadata={"experiment": "b"},
        caller=Caller(name="ann", metadata={"team": "search", "tags": "beta"}),
        response_format=ResponseFormat(FormatKind.JSON_OBJECT),
    )
    assert telemetry.tracer is not None
    with trace.use_span(telemetry.tracer.start_span("call"), end_on_exit=True):
        recorder.call_started(request)
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes == {
        "switchboard.metadata.experiment": "b",
        "switchboard.caller.team": "search",
        "switchboard.caller.tags": "beta",
        "gen_ai.output.type": "json",
    }
    telemetry.shutdown()
