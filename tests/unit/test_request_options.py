"""Provider options: checked at the edge, sent where taken, dropped (and said so) elsewhere."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.api import convert
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.app import build_gateway
from switchboard.config import parse_settings
from switchboard.domain import CompletionRequest, Message, RequestOptions, Role, Sampling
from switchboard.errors import CapacityExhausted, InvalidRequest
from switchboard.providers.litellm_adapter import LitellmProvider
from switchboard.providers.openai_wire import MalformedAnswer, parse_response, request_fields
from switchboard.telemetry import Recorder, TelemetrySettings, build_telemetry, plan_export
from tests.unit.fakes import FakeClock, ScriptedProvider

OPTIONS = RequestOptions(
    user="end-user-7",
    parallel_tool_calls=False,
    reasoning_effort="low",
    logit_bias={50256: -100.0},
    logprobs=True,
    top_logprobs=2,
    extra_params={"service_tier": "flex"},
)
DEPLOYMENTS = {
    d.id: d
    for d in parse_settings(
        """
model_list:
  - {model_name: a, litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: k},
     model_info: {id: anthropic}}
  - {model_name: o, litellm_params: {model: openai/gpt-4o-mini, api_key: k},
     model_info: {id: openai}}
""",
        source="test",
        env={},
    ).deployments
}


def _request(options: RequestOptions = OPTIONS) -> CompletionRequest:
    return CompletionRequest(model="a", messages=(Message(Role.USER, "hi"),), options=options)


def test_options_convert_from_the_request() -> None:
    extra = struct_pb2.Struct()
    extra.update({"service_tier": "flex"})
    msg = pb.CompleteRequest(
        model="a",
        messages=[pb.Message(role=pb.ROLE_USER, content="hi")],
        user="end-user-7",
        parallel_tool_calls=False,
        reasoning_effort="low",
        logit_bias={50256: -100.0},
        logprobs=True,
        top_logprobs=2,
        extra_params=extra,
    )
    assert convert.request_from_proto(msg).options == OPTIONS
    plain = pb.CompleteRequest(model="a", messages=[pb.Message(role=pb.ROLE_USER, content="x")])
    assert convert.request_from_proto(plain).options == RequestOptions()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user": "u" * 257}, "user"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"logit_bias": {1: 101.0}}, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"logit_bias": dict.fromkeys(range(301), 1.0)}, "logit_bias"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"extra_params": {"model": "other"}}, "extra_params"),
        ({"extra_params": {"api_base": "http://evil"}}, "extra_params"),
    ],
)
def test_bad_options_are_named(fields: dict[str, object], field: str) -> None:
    if "extra_params" in fields:
        struct = struct_pb2.Struct()
        struct.update(fields["extra_params"])  # type: ignore[arg-type]
        fields = {"extra_params": struct}
    msg = pb.CompleteRequest(
        model="a",
        messages=[pb.Message(role=pb.ROLE_USER, content="hi")],
        **fields,  # type: ignore[arg-type]
    )
    with pytest.raises(InvalidRequest) as caught:
        convert.request_from_proto(msg)
    assert {v.field for v in caught.value.violations} == {field}


def test_options_go_out_under_openai_s_names() -> None:
    fields = request_fields(_request())
    assert {k: fields[k] for k in ("user", "reasoning_effort", "logit_bias", "service_tier")} == {
        "user": "end-user-7",
        "reasoning_effort": "low",
        "logit_bias": {"50256": -100.0},
        "service_tier": "flex",
    }
    assert "user" not in request_fields(_request(RequestOptions()))


def test_litellm_drops_what_the_provider_does_not_take() -> None:
    provider = LitellmProvider()
    anthropic, openai = DEPLOYMENTS["anthropic"], DEPLOYMENTS["openai"]
    assert provider.dropped_params(anthropic, _request()) == (
        "logit_bias",
        "logprobs",
        "top_logprobs",
    )
    kwargs = provider._call_args(anthropic, _request(), 10.0, stream=False)
    assert "logit_bias" not in kwargs
    assert "logprobs" not in kwargs
    assert kwargs["user"] == "end-user-7"
    assert kwargs["reasoning_effort"] == "low"
    # gpt-4o-mini is no reasoning model.
    assert provider.dropped_params(openai, _request()) == ("reasoning_effort",)
    assert provider.dropped_params(openai, _request(RequestOptions())) == ()


def test_what_was_dropped_is_on_the_attempt_span() -> None:
    spans = InMemorySpanExporter()
    telemetry = build_telemetry(
        plan_export(TelemetrySettings(), {}), span_processors=[SimpleSpanProcessor(spans)]
    )
    recorder = Recorder(telemetry, clock=lambda: 0.0)
    attempt = recorder.attempt(
        DEPLOYMENTS["anthropic"], _request(), stream=False, dropped=("logit_bias",)
    )
    attempt.failed(RuntimeError("x"))
    (span,) = spans.get_finished_spans()
    assert (span.attributes or {})["switchboard.dropped_params"] == ("logit_bias",)
    telemetry.shutdown()


def test_several_answers_are_parsed_in_order() -> None:
    data = {
        "id": "r",
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": f"answer {i}"}}
            for i in range(3)
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
    }
    response = parse_response(data, None)
    assert response.message.content == "answer 0"
    assert [m.content for m in response.choices] == ["answer 0", "answer 1", "answer 2"]
    one = parse_response({**data, "choices": data["choices"][:1]}, None)
    assert one.choices == ()
    with pytest.raises(MalformedAnswer):
        parse_response({**data, "choices": data["choices"] * 6}, None)


async def test_n_answers_reserve_n_outputs_and_streams_take_one() -> None:
    settings = parse_settings(
        """
model_list:
  - {model_name: m, litellm_params: {model: openai/m, tpm: 350}, model_info: {id: m}}
router_settings: {max_queue_wait: 0}
""",
        source="test",
        env={},
    )
    clock = FakeClock()
    gateway = build_gateway(
        settings, clock=clock, provider=ScriptedProvider(clock), sleep=clock.sleep
    )

    def asking(n: int) -> CompletionRequest:
        return CompletionRequest(
            model="m",
            messages=(Message(Role.USER, "hi"),),
            sampling=Sampling(max_tokens=100),
            options=RequestOptions(n=n),
        )

    # The fake estimates "hi" at 2 tokens: 2 + 3 x 100 fits in 350, 2 + 4 x 100 never does.
    await gateway.complete(asking(3), deadline=None)
    with pytest.raises(CapacityExhausted) as caught:
        await gateway.complete(asking(4), deadline=None)
    assert caught.value.retry_after is None
    with pytest.raises(InvalidRequest) as refused:
        async for _ in gateway.stream(asking(2), deadline=None):
            pass
    assert [v.field for v in refused.value.violations] == ["n"]


def test_n_is_bounded_at_the_edge() -> None:
    for n in (0, 9):
        msg = pb.CompleteRequest(
            model="a", messages=[pb.Message(role=pb.ROLE_USER, content="hi")], n=n
        )
        with pytest.raises(InvalidRequest) as caught:
            convert.request_from_proto(msg)
        assert {v.field for v in caught.value.violations} == {"n"}
