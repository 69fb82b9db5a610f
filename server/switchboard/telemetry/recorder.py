"""What the gateway tells telemetry: one client span per upstream attempt, metrics per call.

The gateway calls this with domain objects only; every OpenTelemetry type
stays in this package. With telemetry off, `Recorder.attempt` hands back one
shared do-nothing object, so the call path pays a method call and no more.

Prompts and completions go on spans only when `capture_content` is on.
Caller keys never reach here: the caller is known by its name.

Every metric label's values are bounded by the config or the code: model
groups, deployments and key names as configured (a model name that is none of
them is recorded as `unknown`), error types from the error tree, and at most a
few response models per deployment. Spans take the same bounded model names,
and never a provider's error text.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from switchboard.config import Deployment
from switchboard.domain import (
    AliasChoice,
    CompletionRequest,
    FinishReason,
    ProviderResponse,
    RouteFacts,
    Usage,
)
from switchboard.errors import SwitchboardError, failure_kind
from switchboard.routing.health import HealthState, HealthView
from switchboard.telemetry import semconv as sc
from switchboard.telemetry.setup import Telemetry

Attributes = dict[str, AttributeValue]


class DeploymentView(Protocol):
    """What the gauges read of a deployment (the gateway's `DeploymentStatus`)."""

    @property
    def health(self) -> HealthView: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def requests_remaining(self) -> int | None: ...
    @property
    def tokens_remaining(self) -> int | None: ...


class AttemptSpan:
    """One upstream attempt; ended exactly once by `succeeded`, `failed` or `streamed`."""

    def started_streaming(self, time_to_first_chunk_s: float) -> None:
        """The first chunk arrived."""

    def add_output(self, text: str) -> None:
        """Streamed text, kept only when content capture is on."""

    def succeeded(self, response: ProviderResponse) -> None: ...

    def streamed(
        self, *, response_id: str, model: str, finish: FinishReason, usage: Usage
    ) -> None: ...

    def failed(self, error: BaseException) -> None: ...


_NOTHING = AttemptSpan()


class _LiveAttempt(AttemptSpan):
    __slots__ = ("_attributes", "_metric_attributes", "_output", "_recorder", "_span", "_started")

    def __init__(
        self,
        recorder: Recorder,
        span: trace.Span | None,
        attributes: Attributes,
        started: float,
    ) -> None:
        self._recorder = recorder
        self._span = span
        self._attributes = attributes
        self._started = started
        self._output: list[str] | None = [] if recorder.capture_content else None

    def started_streaming(self, time_to_first_chunk_s: float) -> None:
        if self._span is not None:
            self._span.set_attribute(
                sc.TIME_TO_FIRST_CHUNK_MS, round(time_to_first_chunk_s * 1000, 3)
            )
            self._span.add_event("first_chunk")

    def add_output(self, text: str) -> None:
        if self._output is not None:
            self._output.append(text)

    def succeeded(self, response: ProviderResponse) -> None:
        output = response.message.content if self._output is not None else None
        self._end(response.id, response.model, response.finish_reason, response.usage, output)

    def streamed(self, *, response_id: str, model: str, finish: FinishReason, usage: Usage) -> None:
        output = "".join(self._output) if self._output is not None else None
        self._end(response_id, model, finish, usage, output)

    def _end(
        self,
        response_id: str,
        model: str,
        finish: FinishReason,
        usage: Usage,
        output: str | None,
    ) -> None:
        recorder = self._recorder
        metric_attributes = dict(self._attributes)
        if model:
            deployment = str(self._attributes[sc.DEPLOYMENT])
            metric_attributes[sc.RESPONSE_MODEL] = recorder.response_model(deployment, model)
        recorder.attempt_metrics(metric_attributes, self._started, usage)
        span = self._span
        if span is None:
            return
        span.set_attributes(
            {
                sc.RESPONSE_ID: _short(response_id),
                sc.RESPONSE_MODEL: _short(model),
                sc.RESPONSE_FINISH_REASONS: (finish.value,),
                sc.USAGE_INPUT_TOKENS: usage.input_tokens,
                sc.USAGE_OUTPUT_TOKENS: usage.output_tokens,
            }
        )
        if output is not None:
            span.set_attribute(sc.OUTPUT_MESSAGES, _messages_json([("assistant", output)]))
        span.end()

    def failed(self, error: BaseException) -> None:
        metric_attributes = dict(self._attributes)
        metric_attributes[sc.ERROR_TYPE] = _error_label(error)
        self._recorder.attempt_metrics(metric_attributes, self._started, None)
        span = self._span
        if span is None:
            return
        span.set_attribute(sc.ERROR_TYPE, _error_type(error))
        # The kind only: a provider's message may hold keys or account ids.
        span.set_status(Status(StatusCode.ERROR, _describe(error)))
        span.end()


class Recorder:
    """Spans and metrics of calls; `observe` tells it the configured deployments.

    Until `observe` is called no model group is known, so every one is
    recorded as `unknown`: the labels stay bounded whatever the wiring.
    """

    def __init__(self, telemetry: Telemetry, clock: Callable[[], float]) -> None:
        self._tracer = telemetry.tracer
        self._clock = clock
        self.capture_content = telemetry.capture_content
        self.enabled = telemetry.enabled
        self._groups: frozenset[str] = frozenset()
        # Per deployment, the response models seen so far, up to the bound.
        self._response_models: dict[str, set[str]] = {}
        meter = telemetry.meter
        self._meter = meter
        if meter is None:
            return
        self._duration = meter.create_histogram(
            sc.M_OPERATION_DURATION,
            unit="s",
            description="Duration of GenAI operations (one upstream attempt)",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            sc.M_TOKEN_USAGE,
            unit="{token}",
            description="Tokens used per upstream call, by type",
            explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            sc.M_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="From the start of a StreamComplete to its first chunk",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        # Call counts and cost are summed here and read at export time: a dict
        # increment per call instead of two SDK measurements.
        self._request_counts: Counter[tuple[str, str, bool, bool]] = Counter()
        self._costs: defaultdict[tuple[str, str], float] = defaultdict(float)
        meter.create_observable_counter(
            sc.M_REQUESTS,
            [self._observe_requests],
            unit="{request}",
            description="Calls answered, by outcome",
        )
        meter.create_observable_counter(
            sc.M_COST, [self._observe_costs], unit="USD", description="Cost of answered calls"
        )
        # Cache lookups by group, kind and result (hit, miss); the cost hits saved by group.
        self._cache_counts: Counter[tuple[str, str, str]] = Counter()
        self._cache_saved: defaultdict[str, float] = defaultdict(float)
        meter.create_observable_counter(
            sc.M_CACHE_LOOKUPS,
            [self._observe_cache_lookups],
            unit="{lookup}",
            description="Response cache lookups, by kind and result",
        )
        meter.create_observable_counter(
            sc.M_CACHE_COST_SAVED,
            [self._observe_cache_saved],
            unit="USD",
            description="What the answers served from the cache cost when they were made",
        )
        self._wait = meter.create_histogram(
            sc.M_RATELIMIT_WAIT,
            unit="s",
            description="Time calls waited for limiter headroom or a cooldown",
            explicit_bucket_boundaries_advisory=(0.0, *sc.DURATION_BUCKETS),
        )

    # ------------------------------------------------------------------ labels

    def group(self, name: str) -> str:
        """`name` when it is a configured model group, else the one `unknown` value."""
        return name if name in self._groups else sc.UNKNOWN_MODEL

    def response_model(self, deployment: str, model: str) -> str:
        """The model a provider says answered, as a label: a few per deployment, then `_OTHER`."""
        seen = self._response_models.get(deployment)
        if seen is None:
            seen = self._response_models[deployment] = set()
        if model in seen:
            return model
        if len(seen) < sc.RESPONSE_MODELS_PER_DEPLOYMENT and len(model) <= sc.MAX_VALUE_CHARS:
            seen.add(model)
            return model
        return sc.OTHER

    # ------------------------------------------------------------------ attempts

    def attempt(
        self,
        deployment: Deployment,
        request: CompletionRequest,
        *,
        stream: bool,
        dropped: tuple[str, ...] = (),
    ) -> AttemptSpan:
        """`dropped`: the request's options not sent to this deployment's provider."""
        if not self.enabled:
            return _NOTHING
        attributes = _attempt_attributes(deployment)
        span = None
        if self._tracer is not None:
            span_attributes = dict(attributes)
            sampling = request.sampling
            if sampling.max_tokens is not None:
                span_attributes[sc.REQUEST_MAX_TOKENS] = sampling.max_tokens
            if sampling.temperature is not None:
                span_attributes[sc.REQUEST_TEMPERATURE] = sampling.temperature
            if sampling.top_p is not None:
                span_attributes[sc.REQUEST_TOP_P] = sampling.top_p
            if dropped:
                span_attributes[sc.DROPPED_PARAMS] = dropped
            if self.capture_content:
                span_attributes[sc.INPUT_MESSAGES] = _messages_json(
                    (m.role.value, m.content) for m in request.messages
                )
            span = self._tracer.start_span(
                f"{sc.OPERATION_CHAT} {_provider_model(deployment)[1]}",
                kind=SpanKind.CLIENT,
                attributes=span_attributes,
            )
        return _LiveAttempt(self, span, attributes, self._clock())

    def attempt_metrics(self, attributes: Attributes, started: float, usage: Usage | None) -> None:
        if self._meter is None:
            return
        self._duration.record(self._clock() - started, attributes)
        if usage is not None:
            self._tokens.record(usage.input_tokens, {**attributes, sc.TOKEN_TYPE: "input"})
            self._tokens.record(usage.output_tokens, {**attributes, sc.TOKEN_TYPE: "output"})

    # --------------------------------------------------------------------- calls

    def call_started(self, request: CompletionRequest) -> None:
        """What the caller said of its call, on the server span: the request's metadata
        (bounded at the edge), its key's metadata (team, tags) and the output type."""
        if not self.enabled:
            return
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, AttributeValue] = {
            sc.METADATA_PREFIX + key: value for key, value in request.metadata.items()
        }
        caller = request.caller
        if caller is not None:
            for key, value in caller.metadata.items():
                attributes[sc.CALLER_METADATA_PREFIX + key] = value
        rf = request.response_format
        attributes[sc.OUTPUT_TYPE] = "json" if rf is not None and rf.wants_json else "text"
        span.set_attributes(attributes)

    def call_succeeded(
        self,
        group: str,
        route: RouteFacts,
        *,
        time_to_first_chunk_s: float | None = None,
        caller: str | None = None,
    ) -> None:
        """Facts of an answered call, on the current (server) span and in the call metrics."""
        if not self.enabled:
            return
        group = self.group(group)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                {
                    sc.OPERATION_NAME: sc.OPERATION_CHAT,
                    sc.REQUEST_MODEL: group,
                    sc.MODEL_GROUP: route.model_group,
                    sc.DEPLOYMENT: route.deployment,
                    sc.ROUTING_STRATEGY: route.strategy,
                    sc.ROUTING_EXPLORED: route.explored,
                    sc.ROUTING_CANDIDATES: route.candidates,
                    sc.RATELIMIT_WAIT_MS: round(route.queued_s * 1000, 3),
                    sc.CACHE_HIT: route.cache_hit,
                    sc.COST_USD: route.cost_usd,
                    sc.FALLBACK_DEPTH: route.fallback_depth,
                    sc.ATTEMPTS: len(route.attempts),
                }
            )
            if time_to_first_chunk_s is not None:
                span.set_attribute(
                    sc.TIME_TO_FIRST_CHUNK_MS, round(time_to_first_chunk_s * 1000, 3)
                )
            if caller is not None:
                span.set_attribute(sc.CALLER, caller)
            if route.alias is not None:
                _alias_attributes(span, route.alias)
            if route.cache is not None:
                span.set_attributes(
                    {
                        sc.CACHE_KIND: route.cache.kind.value,
                        sc.CACHE_SIMILARITY: route.cache.similarity,
                        sc.CACHE_COST_SAVED: route.cache.cost_saved_usd,
                    }
                )
        if self._meter is None:
            return
        if route.cache is not None:
            self._cache_saved[group] += route.cache.cost_saved_usd
        self._request_counts[(group, "success", route.fallback_depth > 0, route.cache_hit)] += 1
        self._costs[(group, route.deployment)] += route.cost_usd
        self._wait.record(route.queued_s, {sc.MODEL_GROUP: group})
        if time_to_first_chunk_s is not None:
            self._ttfc.record(
                time_to_first_chunk_s, {sc.MODEL_GROUP: group, sc.DEPLOYMENT: route.deployment}
            )

    def call_failed(
        self,
        group: str,
        error: BaseException,
        *,
        caller: str | None = None,
        alias: AliasChoice | None = None,
    ) -> None:
        """`group` as the gateway knows it: the model name as sent when it is unknown."""
        if not self.enabled:
            return
        label = self.group(group)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                {sc.OPERATION_NAME: sc.OPERATION_CHAT, sc.ERROR_TYPE: _error_type(error)}
            )
            if group:
                span.set_attribute(sc.REQUEST_MODEL, label)
            if caller is not None:
                span.set_attribute(sc.CALLER, caller)
            if alias is not None:
                _alias_attributes(span, alias)
        if self._meter is not None:
            self._request_counts[(label, _error_label(error), False, False)] += 1

    def _observe_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        for (group, outcome, fallback, cache_hit), count in list(self._request_counts.items()):
            yield Observation(
                count,
                {
                    sc.MODEL_GROUP: group,
                    sc.OUTCOME: outcome,
                    sc.FALLBACK: fallback,
                    sc.CACHE_HIT: cache_hit,
                },
            )

    def cache_lookup(self, group: str, kind: str, hit: bool) -> None:
        """One lookup of the exact or the semantic cache."""
        if self._meter is not None:
            self._cache_counts[(self.group(group), kind, "hit" if hit else "miss")] += 1

    def _observe_cache_lookups(self, options: CallbackOptions) -> Iterable[Observation]:
        for (group, kind, result), count in list(self._cache_counts.items()):
            yield Observation(
                count, {sc.MODEL_GROUP: group, sc.CACHE_KIND: kind, sc.CACHE_RESULT: result}
            )

    def _observe_cache_saved(self, options: CallbackOptions) -> Iterable[Observation]:
        for group, saved in list(self._cache_saved.items()):
            yield Observation(saved, {sc.MODEL_GROUP: group})

    def _observe_costs(self, options: CallbackOptions) -> Iterable[Observation]:
        for (group, deployment), cost in list(self._costs.items()):
            yield Observation(cost, {sc.MODEL_GROUP: group, sc.DEPLOYMENT: deployment})

    # ------------------------------------------------------------------- gauges

    def observe_sharing(
        self, decisions: Callable[[], Mapping[str, int]], fallbacks: Callable[[], int]
    ) -> None:
        """Counters of shared limits read at each export: admissions by who decided them
        (`redis`, `remembered`, `local`, `outage`), and how often Redis was lost."""
        meter = self._meter
        if meter is None:
            return

        def by_decider(options: CallbackOptions) -> Iterable[Observation]:
            for decided_by, count in decisions().items():
                yield Observation(count, {sc.DECIDED_BY: decided_by})

        def lost(options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(fallbacks())

        meter.create_observable_counter(
            sc.M_RATELIMIT_DECISIONS,
            [by_decider],
            unit="{decision}",
            description="Limiter decisions on shared limits, by who made them",
        )
        meter.create_observable_counter(
            sc.M_RATELIMIT_FALLBACKS,
            [lost],
            unit="{fallback}",
            description="Times Redis was lost and limits fell back to local shares",
        )

    def observe(
        self, deployments: Sequence[Deployment], status: Callable[[Deployment], DeploymentView]
    ) -> None:
        """Learn the configured deployments, which bound the labels, and register gauges
        read at each export: limiter headroom and limits, cooldowns, load.
        """
        self._groups = frozenset(d.model_group for d in deployments)
        meter = self._meter
        if meter is None:
            return

        def headroom(options: CallbackOptions) -> Iterable[Observation]:
            for deployment in deployments:
                snapshot = status(deployment)
                for unit, value in (
                    ("requests", snapshot.requests_remaining),
                    ("tokens", snapshot.tokens_remaining),
                ):
                    if value is not None:
                        yield Observation(
                            value, {sc.DEPLOYMENT: deployment.id, sc.LIMIT_UNIT: unit}
                        )

        def limits(options: CallbackOptions) -> Iterable[Observation]:
            for deployment in deployments:
                for unit, value in (("requests", deployment.rpm), ("tokens", deployment.tpm)):
                    if value is not None:
                        yield Observation(
                            value, {sc.DEPLOYMENT: deployment.id, sc.LIMIT_UNIT: unit}
                        )

        def cooling(options: CallbackOptions) -> Iterable[Observation]:
            for deployment in deployments:
                cooling = status(deployment).health.state is HealthState.COOLING_DOWN
                yield Observation(int(cooling), {sc.DEPLOYMENT: deployment.id})

        def in_flight(options: CallbackOptions) -> Iterable[Observation]:
            for deployment in deployments:
                yield Observation(status(deployment).in_flight, {sc.DEPLOYMENT: deployment.id})

        meter.create_observable_gauge(
            sc.M_RATELIMIT_HEADROOM, [headroom], unit="", description="Limiter room left now"
        )
        meter.create_observable_gauge(
            sc.M_RATELIMIT_LIMIT, [limits], unit="", description="Configured limit per window"
        )
        meter.create_observable_gauge(
            sc.M_COOLING_DOWN, [cooling], unit="", description="1 while a deployment cools down"
        )
        meter.create_observable_gauge(
            sc.M_IN_FLIGHT, [in_flight], unit="{call}", description="Calls in flight"
        )


def _provider_model(deployment: Deployment) -> tuple[str, str]:
    """litellm's `provider/model` string, split; the model is what the provider is asked for."""
    provider, _, model = deployment.model.partition("/")
    if not model:
        return deployment.provider, deployment.model
    return provider, model


def _attempt_attributes(deployment: Deployment) -> Attributes:
    provider, model = _provider_model(deployment)
    attributes: Attributes = {
        sc.OPERATION_NAME: sc.OPERATION_CHAT,
        sc.PROVIDER_NAME: sc.PROVIDERS.get(provider, provider),
        sc.REQUEST_MODEL: model,
        sc.DEPLOYMENT: deployment.id,
        sc.MODEL_GROUP: deployment.model_group,
    }
    api_base = deployment.params.get("api_base")
    if isinstance(api_base, str):
        parts = urlsplit(api_base)
        if parts.hostname:
            attributes[sc.SERVER_ADDRESS] = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
            attributes[sc.SERVER_PORT] = port
    return attributes


def _alias_attributes(span: trace.Span, alias: AliasChoice) -> None:
    """The alias the caller named (a configured name) and an auto alias's decision."""
    span.set_attribute(sc.ALIAS, alias.name)
    auto = alias.auto
    if auto is not None:
        span.set_attributes(
            {
                sc.AUTO_TIER: auto.tier,
                sc.AUTO_SCORE: round(auto.score, 4),
                sc.AUTO_REASON: _short(auto.reason),
            }
        )


def _error_type(error: BaseException) -> str:
    """For spans: the error tree's reason or `cancelled`, else the exception's class."""
    kind = failure_kind(error)
    return _short(kind) if kind is not None else type(error).__name__


def _error_label(error: BaseException) -> str:
    """For metrics: the error tree's reason or `cancelled`, anything else is `_OTHER`."""
    kind = failure_kind(error)
    return _short(kind) if kind is not None else sc.OTHER


def _describe(error: BaseException) -> str:
    """A span's status text: the kind of failure, never its message (which may quote a provider)."""
    return error.reason if isinstance(error, SwitchboardError) else type(error).__name__


def _short(text: str) -> str:
    return text if len(text) <= sc.MAX_VALUE_CHARS else text[: sc.MAX_VALUE_CHARS] + "…"


def _messages_json(messages: Iterable[tuple[str, str]]) -> str:
    return json.dumps(
        [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in messages]
    )
