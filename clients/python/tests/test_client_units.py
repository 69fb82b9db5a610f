"""The client's pure parts: request building, error decoding, the retry policy, metadata."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2, json_format, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.sdk.trace import TracerProvider

from switchboard_client import (
    AsyncClient,
    Cache,
    CacheHit,
    CacheStats,
    Client,
    Internal,
    InvalidArgument,
    Message,
    RateLimited,
    SwitchboardError,
    Tool,
    ToolCall,
    Unavailable,
)
from switchboard_client._errors import DETAILS_KEY, FieldViolation, QuotaViolation, from_status
from switchboard_client._pb import gateway_pb2 as pb
from switchboard_client._policy import CallPolicy, call_metadata, retry_delay
from switchboard_client._request import (
    build_request,
    check_params,
    completion,
    model_list,
    stream_final,
)

TEXT_PART = {"type": "text", "text": "there"}
SCHEMA = {"type": "object"}
# Nothing listens here: calls that reach the network would fail, and none should.
NOWHERE = "127.0.0.1:9"


def test_openai_style_dicts_become_the_request() -> None:
    request = build_request(
        "chat",
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, TEXT_PART]},
            {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        {
            "max_tokens": 5,
            "temperature": 0,
            "stop": "END",
            "seed": 3,
            "top_p": None,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "metadata": {"team": "a"},
            "cache": {"no_cache": True, "ttl_seconds": 60},
            "timeout": 3,
        },
    )

    assert [m.role for m in request.messages] == [
        pb.ROLE_SYSTEM,
        pb.ROLE_USER,
        pb.ROLE_ASSISTANT,
        pb.ROLE_TOOL,
    ]
    assert request.messages[1].content == "Hi there"
    assert request.messages[2].tool_calls[0] == pb.ToolCall(id="c1", name="f", arguments="{}")
    assert request.messages[3].tool_call_id == "c1"
    assert request.max_tokens == 5
    assert request.HasField("temperature")
    assert request.temperature == 0.0
    assert not request.HasField("top_p")
    assert list(request.stop) == ["END"]
    assert request.seed == 3
    assert request.tools[0].name == "f"
    assert dict(request.tools[0].parameters) == {"type": "object"}
    assert request.tool_choice == "f"
    assert dict(request.metadata) == {"team": "a"}
    assert request.cache == pb.CacheControl(no_cache=True, ttl_seconds=60)


def test_typed_values_become_the_request() -> None:
    request = build_request(
        "chat",
        [Message("assistant", "", tool_calls=(ToolCall("c1", "f", '{"a": 1}'),))],
        {"tools": [Tool("f", "does f")], "cache": Cache(no_store=True), "stop": ["a", "b"]},
    )

    assert request.messages[0].tool_calls[0].arguments == '{"a": 1}'
    assert request.tools[0].description == "does f"
    assert request.cache.no_store
    assert not request.cache.HasField("ttl_seconds")
    assert list(request.stop) == ["a", "b"]


def test_every_cache_field_reaches_the_request() -> None:
    whole = {
        "no_store": True,
        "ttl_seconds": 60,
        "namespace": "support",
        "tags": ("doc-1", "doc-2"),
        "semantic": False,
        "min_similarity": 0.8,
    }
    want = pb.CacheControl(
        no_store=True,
        ttl_seconds=60,
        namespace="support",
        tags=["doc-1", "doc-2"],
        semantic=False,
        min_similarity=0.8,
    )

    assert build_request("chat", [], {"cache": whole}).cache == want
    assert build_request("chat", [], {"cache": Cache(**whole)}).cache == want  # type: ignore[arg-type]
    # None in the dict form means "not set", as for every other parameter.
    unset = build_request("chat", [], {"cache": {"semantic": None, "tags": None}}).cache
    assert not unset.HasField("semantic")
    assert not unset.HasField("min_similarity")
    assert list(unset.tags) == []


def test_invalidation_without_tags_or_namespace_is_refused_before_any_call() -> None:
    with Client(NOWHERE) as client:
        with pytest.raises(ValueError, match="tags"):
            client.invalidate_cache()
        with pytest.raises(TypeError, match="not one string"):
            client.invalidate_cache(tags="doc-1")
        with pytest.raises(TypeError, match="namespace"):
            client.invalidate_cache(namespace=None)  # type: ignore[arg-type]


async def test_async_invalidation_without_tags_or_namespace_is_refused() -> None:
    async with AsyncClient(NOWHERE) as client:
        with pytest.raises(ValueError, match="tags"):
            await client.invalidate_cache(namespace="")


CREATED = datetime(2026, 12, 1, 9, 30, 15, 250000, tzinfo=UTC)


def _hit(kind: int) -> pb.CacheHit:
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(CREATED)
    return pb.CacheHit(kind=kind, similarity=0.93, cost_saved_usd=0.002, created=created)


def test_a_cache_hit_becomes_plain_values() -> None:
    semantic = CacheHit(kind="semantic", similarity=0.93, cost_saved_usd=0.002, created=CREATED)

    done = completion(pb.CompleteResponse(cache_hit=True, cache=_hit(pb.CACHE_KIND_SEMANTIC)))
    final = stream_final(pb.Final(cache_hit=True, cache=_hit(pb.CACHE_KIND_EXACT)))
    # A kind from a newer gateway keeps its number rather than failing the call.
    newer = completion(pb.CompleteResponse(cache_hit=True, cache=pb.CacheHit(kind=7)))

    assert done.cache == semantic
    assert final.cache is not None
    assert final.cache.kind == "exact"
    assert newer.cache == CacheHit(kind="7", similarity=0.0, cost_saved_usd=0.0, created=None)
    assert completion(pb.CompleteResponse()).cache is None
    assert stream_final(pb.Final()).cache is None


def test_model_list_carries_the_caches() -> None:
    listing = model_list(
        pb.ListModelsResponse(
            caches=[
                pb.CacheStats(name="exact", backend="redis", entries=3, bytes=0),
                pb.CacheStats(name="semantic", backend="memory", entries=2),
            ]
        )
    )

    assert listing.caches == (
        CacheStats(name="exact", backend="redis", entries=3, bytes=0),
        CacheStats(name="semantic", backend="memory", entries=2, bytes=None),
    )
    assert model_list(pb.ListModelsResponse()).caches == ()


def test_unknown_parameter_is_a_type_error_before_any_call() -> None:
    with Client(NOWHERE) as client, pytest.raises(TypeError, match="max_token"):
        client.complete("chat", [{"role": "user", "content": "Hi"}], max_token=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="stream"):
        check_params("stream", {"n": 2})


@pytest.mark.parametrize(
    ("messages", "params", "error"),
    [
        ([{"role": "robot", "content": "Hi"}], {}, ValueError),
        ([{"role": "user", "content": "Hi", "audio": {"id": "x"}}], {}, ValueError),
        ([{"role": "user", "content": [{"type": "image_url"}]}], {}, ValueError),
        ([{"role": "user", "content": 7}], {}, TypeError),
        ([("user", "Hi")], {}, TypeError),
        ({"role": "user", "content": "Hi"}, {}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"max_tokens": True}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"max_tokens": 1.5}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"temperature": "hot"}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"metadata": {"a": 1}}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"cache": {"forever": True}}, ValueError),
        ([{"role": "user", "content": "Hi"}], {"cache": {"tags": "doc-1"}}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"cache": {"tags": ["doc-1", 2]}}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"cache": {"namespace": 3}}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"cache": {"semantic": "yes"}}, TypeError),
        ([{"role": "user", "content": "Hi"}], {"cache": Cache(min_similarity="high")}, TypeError),  # type: ignore[arg-type]
    ],
)
def test_malformed_input_is_refused_locally(
    messages: object, params: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build_request("chat", messages, params)  # type: ignore[arg-type]


def _status(code: grpc.StatusCode, *details: object) -> tuple[tuple[str, bytes], ...]:
    packed = []
    for detail in details:
        a = any_pb2.Any()
        a.Pack(detail)  # type: ignore[arg-type]
        packed.append(a)
    status = status_pb2.Status(code=code.value[0], message="m", details=packed)
    return ((DETAILS_KEY, status.SerializeToString()),)


def test_every_detail_is_decoded() -> None:
    delay = duration_pb2.Duration(seconds=2, nanos=500_000_000)
    trailer = _status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        error_details_pb2.ErrorInfo(
            reason="CAPACITY_EXHAUSTED", domain="switchboard.dev", metadata={"limit": "key:a"}
        ),
        error_details_pb2.RetryInfo(retry_delay=delay),
        error_details_pb2.QuotaFailure(
            violations=[error_details_pb2.QuotaFailure.Violation(subject="key:a", description="d")]
        ),
    )

    error = from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "no room", trailer)

    assert isinstance(error, RateLimited)
    assert error.reason == "CAPACITY_EXHAUSTED"
    assert error.metadata == {"limit": "key:a"}
    assert error.retry_after == 2.5
    assert error.quota_violations == (QuotaViolation("key:a", "d"),)
    assert str(error) == "RESOURCE_EXHAUSTED (CAPACITY_EXHAUSTED): no room"


def test_bad_request_becomes_field_violations() -> None:
    trailer = _status(
        grpc.StatusCode.INVALID_ARGUMENT,
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="max_tokens", description="d")
            ]
        ),
    )

    error = from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailer)

    assert isinstance(error, InvalidArgument)
    assert error.field_violations == (FieldViolation("max_tokens", "d"),)
    assert error.reason == ""


@pytest.mark.parametrize(
    "trailer",
    [
        (),
        ((DETAILS_KEY, b"\xff\xff not a status"),),
        # Details of another status than the one the call ended with are not this error's.
        _status(grpc.StatusCode.NOT_FOUND, error_details_pb2.ErrorInfo(reason="OTHER")),
    ],
)
def test_missing_garbled_or_foreign_details_leave_the_bare_status(
    trailer: tuple[tuple[str, bytes], ...],
) -> None:
    error = from_status(grpc.StatusCode.UNAVAILABLE, "down", trailer)

    assert type(error) is Unavailable
    assert error.reason == ""
    assert error.metadata == {}
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNKNOWN, Internal),
        (grpc.StatusCode.DATA_LOSS, Internal),
        (grpc.StatusCode.ABORTED, SwitchboardError),
    ],
)
def test_remaining_codes_map_to_a_class(code: grpc.StatusCode, cls: type[Exception]) -> None:
    error = from_status(code, "x", ())

    assert type(error) is cls
    assert error.code == code


def test_retry_delay_follows_retry_info_then_backs_off() -> None:
    limited = RateLimited("x", retry_after=1.5)
    never = RateLimited("x")
    down = Unavailable("x")

    assert retry_delay(limited, 0) == 1.5
    assert retry_delay(never, 0) is None
    assert retry_delay(InvalidArgument("x"), 0) is None
    assert retry_delay(down, 0, rng=lambda: 0.0) == pytest.approx(0.05)
    assert retry_delay(down, 2, rng=lambda: 1.0) == pytest.approx(0.4)
    assert retry_delay(down, 30, rng=lambda: 1.0) == pytest.approx(5.0)
    assert retry_delay(Unavailable("x", retry_after=0.7), 5) == 0.7


def test_policy_keeps_one_deadline_for_every_attempt() -> None:
    now = [100.0]
    policy = CallPolicy.start(2.0, retries=3, clock=lambda: now[0])

    assert policy.wait_before_retry(RateLimited("x", retry_after=0.5)) == 0.5
    now[0] += 0.5
    assert policy.timeout() == pytest.approx(1.5)
    # 1.5 s left: a 1.49 s wait would leave too little for an attempt.
    assert policy.wait_before_retry(RateLimited("x", retry_after=1.49)) is None
    assert policy.wait_before_retry(RateLimited("x", retry_after=1.0)) == 1.0
    now[0] += 5
    assert policy.timeout() == 0.0


def test_policy_counts_its_retries() -> None:
    policy = CallPolicy.start(None, retries=1)

    assert policy.wait_before_retry(RateLimited("x", retry_after=0.0)) == 0.0
    assert policy.wait_before_retry(RateLimited("x", retry_after=0.0)) is None


@pytest.mark.parametrize(("timeout", "retries"), [(0, 0), (-1, 0), (None, -1), (None, True)])
def test_bad_defaults_are_refused_at_construction(timeout: float | None, retries: int) -> None:
    with pytest.raises(ValueError, match=r"timeout|retries"):
        Client(NOWHERE, timeout=timeout, retries=retries)


def test_metadata_carries_the_key_and_the_active_span() -> None:
    tracer = TracerProvider().get_tracer("caller")

    assert call_metadata(None) == ()
    assert call_metadata("sk-1") == (("authorization", "Bearer sk-1"),)
    with tracer.start_as_current_span("caller") as span:
        metadata = dict(call_metadata("sk-1"))

    context = span.get_span_context()
    assert metadata["authorization"] == "Bearer sk-1"
    assert metadata["traceparent"].split("-")[1:3] == [
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    ]


def test_response_format_is_taken_in_openai_s_shape() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    spec = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    request = build_request("chat", [], {"response_format": spec, "validate_json": True})
    assert request.response_format.type == pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    assert request.response_format.name == "n"
    assert request.response_format.strict
    assert json_format.MessageToDict(request.response_format.schema) == schema
    assert request.validate_json
    plain = build_request("chat", [], {"response_format": {"type": "json_object"}})
    assert plain.response_format.type == pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    assert not plain.HasField("validate_json")
    with pytest.raises(TypeError, match="response_format"):
        build_request("chat", [], {"response_format": {"type": "yaml"}})
    with pytest.raises(TypeError, match="json_schema needs"):
        build_request("chat", [], {"response_format": {"type": "json_schema"}})


def test_provider_options_are_passed() -> None:
    request = build_request(
        "chat",
        [],
        {
            "user": "u-7",
            "parallel_tool_calls": False,
            "reasoning_effort": "low",
            "logit_bias": {50256: -100},
            "logprobs": True,
            "top_logprobs": 2,
            "extra_params": {"service_tier": "flex"},
            "n": 2,
        },
    )
    assert (request.user, request.reasoning_effort, request.top_logprobs) == ("u-7", "low", 2)
    assert request.n == 2
    assert request.HasField("parallel_tool_calls")
    assert not request.parallel_tool_calls
    assert dict(request.logit_bias) == {50256: -100.0}
    assert json_format.MessageToDict(request.extra_params) == {"service_tier": "flex"}
    with pytest.raises(TypeError, match="logprobs"):
        build_request("chat", [], {"logprobs": "yes"})
