"""`Client` against a live gateway serving the simulator (conftest.live)."""

from __future__ import annotations

import math
import time

import grpc
import pytest
from conftest import USER, Live, raised_within

from switchboard_client import (
    Client,
    DeadlineExceeded,
    InvalidArgument,
    Message,
    NotFound,
    RateLimited,
    SwitchboardError,
    Unauthenticated,
)
from switchboard_client._pb import gateway_pb2 as pb
from switchboard_client._pb.gateway_pb2_grpc import GatewayStub


def test_complete(live: Live, client: Client) -> None:
    done = client.complete(live.chat, USER, max_tokens=16)

    assert done.text
    assert done.message.role == "assistant"
    assert done.model_group == live.chat
    assert done.usage.input_tokens > 0
    assert 0 < done.usage.output_tokens <= 16
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.cost_usd > 0
    assert done.cache_hit is False
    assert done.fallback_depth == 0
    assert done.finish_reason in {"stop", "length"}
    assert done.attempts[-1].outcome == "success"
    assert done.attempts[-1].deployment == done.deployment
    assert done.deployment in client_deployments(client, live.chat)


def test_complete_takes_typed_messages_and_an_alias(live: Live, client: Client) -> None:
    done = client.complete(live.alias, [Message("system", "Be brief."), Message("user", "Hi")])

    assert done.text
    assert done.model_group == live.chat


def test_complete_calls_a_forced_tool(live: Live, client: Client) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    done = client.complete(live.chat, USER, tools=[weather], tool_choice="get_weather")

    assert done.finish_reason == "tool_calls"
    assert [c.name for c in done.tool_calls] == ["get_weather"]
    assert done.tool_calls[0].id


def test_stream_yields_every_delta_then_the_final_usage(live: Live, client: Client) -> None:
    # With a seed the simulator answers the same text every time, so the
    # client's deltas can be checked against the raw stub's. Not one by one:
    # the gateway merges upstream events that arrive together, which depends
    # on timing.
    model = live.stream
    request = pb.CompleteRequest(
        model=model, seed=11, messages=[pb.Message(role=pb.ROLE_USER, content="Say something.")]
    )
    with grpc.insecure_channel(live.target) as channel:
        events = list(
            GatewayStub(channel).StreamComplete(
                request, timeout=20, metadata=(("authorization", f"Bearer {live.api_key}"),)
            )
        )
    raw = [e.delta.content for e in events if e.WhichOneof("event") == "delta" and e.delta.content]

    with client.stream(model, USER, seed=11) as stream:
        deltas = list(stream)

    assert len(raw) > 1
    assert len(deltas) > 1
    assert all(deltas)
    assert stream.text == "".join(raw) == client.complete(model, USER, seed=11).text
    final = stream.final
    assert final is not None
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens
    assert final.cost_usd > 0
    assert final.model_group == model
    assert final.attempts[-1].outcome == "success"
    assert final.attempts[-1].deployment == final.deployment
    assert final.finish_reason in {"stop", "length"}
    assert next(stream, None) is None


def test_stream_final_is_unset_until_the_end(live: Live, client: Client) -> None:
    stream = client.stream(live.stream, USER, max_tokens=8)
    assert stream.final is None
    first = next(stream)
    assert stream.final is None  # the final event comes after the last delta
    rest = list(stream)
    assert stream.final is not None
    assert stream.text == first + "".join(rest)


def test_unknown_model_is_not_found_with_its_reason(live: Live, client: Client) -> None:
    with pytest.raises(NotFound) as raised:
        client.complete("no-such-model", USER)

    error = raised.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "MODEL_NOT_FOUND"
    assert error.domain == "switchboard.dev"
    assert error.metadata == {"model": "no-such-model"}
    assert "no-such-model" in error.message
    assert isinstance(error, SwitchboardError)


def test_stream_of_an_unknown_model_is_not_found(live: Live, client: Client) -> None:
    with pytest.raises(NotFound) as raised:
        list(client.stream("no-such-model", USER))

    assert raised.value.reason == "MODEL_NOT_FOUND"


def test_invalid_request_lists_its_field_violations(live: Live, client: Client) -> None:
    with pytest.raises(InvalidArgument) as raised:
        client.complete(live.chat, [{"role": "user", "content": ""}], max_tokens=0)

    fields = {v.field for v in raised.value.field_violations}
    assert fields == {"messages[0].content", "max_tokens"}
    assert raised.value.reason == "INVALID_REQUEST"


def test_spent_key_is_rate_limited_with_retry_info(live: Live, exhausted_key: str) -> None:
    with (
        Client(live.target, api_key=exhausted_key, timeout=10) as limited,
        pytest.raises(RateLimited) as raised,
    ):
        limited.complete(live.chat, USER, max_tokens=8)

    error = raised.value
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "CAPACITY_EXHAUSTED"
    assert error.retry_after is not None
    assert math.isfinite(error.retry_after)
    assert error.retry_after > 0
    assert [v.subject for v in error.quota_violations] == [error.metadata["limit"]]


def test_retry_never_waits_past_the_deadline(live: Live, exhausted_key: str) -> None:
    # RetryInfo asks for far more than the 2 s deadline: waiting it out could
    # only end past the deadline, so the client raises at once.
    deadline_s = 2.0
    with Client(live.target, api_key=exhausted_key, timeout=deadline_s, retries=5) as limited:
        started = time.monotonic()
        error = raised_within(2 * deadline_s, lambda: limited.complete(live.chat, USER))
        spent = time.monotonic() - started

    assert isinstance(error, RateLimited)
    assert error.retry_after is not None
    assert error.retry_after > deadline_s
    assert spent < deadline_s


def test_expired_deadline_is_deadline_exceeded(live: Live, client: Client) -> None:
    timeout = live.slow_ms / 1000 / 6
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as raised:
        client.complete(live.slow, USER, timeout=timeout)
    spent = time.monotonic() - started

    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert timeout <= spent < live.slow_ms / 1000


def test_stream_deadline_expires_before_the_first_delta(live: Live, client: Client) -> None:
    stream = client.stream(live.slow, USER, timeout=live.slow_ms / 1000 / 6)

    with pytest.raises(DeadlineExceeded):
        next(stream)
    assert stream.final is None
    assert next(stream, None) is None


def test_client_default_timeout_applies(live: Live) -> None:
    timeout = live.slow_ms / 1000 / 6
    with (
        Client(live.target, api_key=live.api_key, timeout=timeout) as c,
        pytest.raises(DeadlineExceeded),
    ):
        c.complete(live.slow, USER)


@pytest.mark.parametrize("key", ["sk-wrong", None])
def test_wrong_or_missing_key_is_unauthenticated(live: Live, key: str | None) -> None:
    with (
        Client(live.target, api_key=key, timeout=10) as stranger,
        pytest.raises(Unauthenticated) as raised,
    ):
        stranger.complete(live.chat, USER)

    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.reason == "UNAUTHENTICATED"


def test_list_models(live: Live, client: Client) -> None:
    models = client.list_models()

    groups = {g.name: g for g in models.groups}
    assert {live.chat, live.slow} <= set(groups)
    assert models.aliases[live.alias] == live.chat
    assert live.alias in models.names()
    for group in groups.values():
        assert group.deployments
        for d in group.deployments:
            assert d.id
            assert d.provider == "openai"
            assert d.state == "healthy"
            assert d.cooldown_until is None


def client_deployments(client: Client, group: str) -> set[str]:
    return {d.id for g in client.list_models().groups if g.name == group for d in g.deployments}
