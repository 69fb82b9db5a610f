"""Domain answers -> CompleteResponse and Final: every routing fact, and set fields stay set."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from switchboard.api import convert
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.domain import (
    AliasChoice,
    Attempt,
    AutoChoice,
    CacheFacts,
    CacheKind,
    Completion,
    FinishReason,
    Message,
    Outcome,
    ProviderResponse,
    Role,
    RouteFacts,
    StreamFinal,
    ToolCall,
    Usage,
)


def _route(**fields: object) -> RouteFacts:
    base: dict[str, object] = {
        "deployment": "fast",
        "model_group": "chat",
        "attempts": (
            Attempt("instant", "chat", Outcome.RATE_LIMITED, 0.05, error="429"),
            Attempt("fast", "chat", Outcome.SUCCESS, 1.25),
        ),
        "fallback_depth": 1,
        "cost_usd": 0.0012,
        "strategy": "least-busy",
        "candidates": ("instant", "fast"),
    }
    return RouteFacts(**(base | fields))  # type: ignore[arg-type]


def _completion(route: RouteFacts, **fields: object) -> Completion:
    base: dict[str, object] = {
        "id": "r1",
        "model": "m",
        "message": Message(Role.ASSISTANT, "hi"),
        "finish_reason": FinishReason.STOP,
        "usage": Usage(input_tokens=12, output_tokens=4, cached_input_tokens=2),
    }
    return Completion(ProviderResponse(**(base | fields)), route)  # type: ignore[arg-type]


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def test_a_completion_carries_every_routing_fact() -> None:
    calls = (ToolCall("c1", "lookup", '{"q": 1}'),)
    route = _route(
        alias=AliasChoice("auto", AutoChoice("small", 0.25, "short prompt", "chat")),
        cache=CacheFacts(CacheKind.SEMANTIC, 0.97, 0.002, created=1_700_000_000.5),
        queued_s=0.003,
    )
    response = convert.complete_response(
        _completion(route, message=Message(Role.ASSISTANT, "", tool_calls=calls))
    )

    assert (response.id, response.model, response.deployment, response.model_group) == (
        "r1",
        "m",
        "fast",
        "chat",
    )
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert response.message.role == pb.ROLE_ASSISTANT
    assert [(c.id, c.name, c.arguments) for c in response.message.tool_calls] == [
        ("c1", "lookup", '{"q": 1}')
    ]
    assert (response.usage.input_tokens, response.usage.total_tokens) == (12, 16)
    assert response.usage.cached_input_tokens == 2
    assert [(a.deployment, a.outcome, a.error) for a in response.attempts] == [
        ("instant", pb.ATTEMPT_OUTCOME_RATE_LIMITED, "429"),
        ("fast", pb.ATTEMPT_OUTCOME_SUCCESS, ""),
    ]
    assert response.attempts[1].latency == _duration(1.25)
    assert response.fallback_depth == 1
    routing = response.routing
    assert (routing.strategy, list(routing.candidates)) == ("least-busy", ["instant", "fast"])
    assert routing.queue_wait == _duration(0.003)
    assert routing.alias == "auto"
    assert (routing.auto.tier, routing.auto.score, routing.auto.model_group) == (
        "small",
        0.25,
        "chat",
    )
    assert response.cache.kind == pb.CACHE_KIND_SEMANTIC
    assert response.cache.created.seconds == 1_700_000_000
    assert not response.choices


def test_zero_valued_submessages_are_still_set() -> None:
    """Clients may test presence: usage, message, routing and its waits are always set."""
    route = _route(attempts=(Attempt("fast", "chat", Outcome.SUCCESS, 0.0),), candidates=())
    response = convert.complete_response(_completion(route, usage=Usage()))

    for field in ("message", "usage", "routing"):
        assert response.HasField(field), field
    assert response.routing.HasField("queue_wait")
    assert response.attempts[0].HasField("latency")
    assert not response.routing.HasField("auto")
    assert not response.HasField("cache")


@pytest.mark.parametrize("seconds", [0.0, 1e-10, 0.5, 1.999999999, 123.456789, -0.25, -1.5])
def test_durations_are_set_as_from_nanoseconds_sets_them(seconds: float) -> None:
    route = _route(attempts=(Attempt("fast", "chat", Outcome.SUCCESS, seconds),), queued_s=seconds)
    response = convert.complete_response(_completion(route))

    assert response.attempts[0].latency == _duration(seconds)
    assert response.routing.queue_wait == _duration(seconds)


def test_several_answers_are_choices() -> None:
    choices = (Message(Role.ASSISTANT, "a"), Message(Role.ASSISTANT, "b"))
    response = convert.complete_response(_completion(_route(), choices=choices))

    assert [c.content for c in response.choices] == ["a", "b"]
    assert all(c.role == pb.ROLE_ASSISTANT for c in response.choices)


def test_a_stream_ends_with_the_same_routing_facts() -> None:
    route = _route(alias=AliasChoice("quick"))
    final = StreamFinal("r1", "m", FinishReason.LENGTH, Usage(3, 5), route, 0.2)
    event = convert.stream_final(final).final

    expected = convert.complete_response(_completion(route))
    assert list(event.attempts) == list(expected.attempts)
    assert event.routing == expected.routing
    assert event.time_to_first_chunk == _duration(0.2)
    assert (event.usage.total_tokens, event.finish_reason) == (8, pb.FINISH_REASON_LENGTH)
