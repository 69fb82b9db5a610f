"""Retries, cancellation and trace propagation, against a scripted Gateway on loopback.

The live gateway cannot be made to answer "wait 0.2 s" or "unavailable, then
fine" on demand, nor show what metadata reached it, so these tests serve the
Gateway service from a real gRPC server in this process whose answers follow
a script, and which records what each call brought.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from conftest import raised_within
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.sdk.trace import TracerProvider

from switchboard_client import (
    AsyncClient,
    Client,
    InvalidArgument,
    RateLimited,
    Unavailable,
)
from switchboard_client._pb import gateway_pb2 as pb
from switchboard_client._pb import gateway_pb2_grpc as pb_grpc

USER = [{"role": "user", "content": "Hi"}]
WAIT_S = 10.0  # the most any test waits for the server to see something


@dataclass
class Seen:
    at: float
    time_remaining: float | None
    metadata: dict[str, str]


Step = Callable[[grpc.ServicerContext], Any]


@dataclass
class Scripted(pb_grpc.GatewayServicer):
    """Answers each call with the next step of its method's script (an answer by default)."""

    complete: list[Step] = field(default_factory=list)
    stream: list[Callable[[grpc.ServicerContext], Iterator[pb.StreamCompleteResponse]]] = field(
        default_factory=list
    )
    seen: list[Seen] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def _see(self, context: grpc.ServicerContext) -> None:
        self.seen.append(
            Seen(
                at=time.monotonic(),
                time_remaining=context.time_remaining(),
                metadata={k: v for k, v in context.invocation_metadata() if isinstance(v, str)},
            )
        )

    def Complete(self, request: pb.CompleteRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._see(context)
        step = self.complete.pop(0) if self.complete else answer("done")
        return step(context)

    def StreamComplete(  # noqa: N802
        self, request: pb.CompleteRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamCompleteResponse]:
        self._see(context)
        step = self.stream.pop(0) if self.stream else events("a", "b")
        yield from step(context)

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._see(context)
        return pb.ListModelsResponse()


def answer(text: str) -> Step:
    def step(context: grpc.ServicerContext) -> pb.CompleteResponse:
        return pb.CompleteResponse(
            message=pb.Message(role=pb.ROLE_ASSISTANT, content=text),
            finish_reason=pb.FINISH_REASON_STOP,
        )

    return step


def fail(code: grpc.StatusCode, *, retry_after: float | None = None) -> Step:
    """Ends the call with `code` and the gateway's details: ErrorInfo, and RetryInfo if given."""

    def step(context: grpc.ServicerContext) -> None:
        details = []
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason="SCRIPTED", domain="switchboard.dev"))
        details.append(info)
        if retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(retry_after * 1e9))
            retry = any_pb2.Any()
            retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            details.append(retry)
        status = status_pb2.Status(code=code.value[0], message="scripted", details=details)
        context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        context.abort(code, "scripted")

    return step


def events(*texts: str) -> Callable[[grpc.ServicerContext], Iterator[pb.StreamCompleteResponse]]:
    def step(context: grpc.ServicerContext) -> Iterator[pb.StreamCompleteResponse]:
        for text in texts:
            yield pb.StreamCompleteResponse(delta=pb.Delta(content=text))
        yield pb.StreamCompleteResponse(final=pb.Final(usage=pb.Usage(output_tokens=len(texts))))

    return step


def failing_stream(
    code: grpc.StatusCode, *, after: tuple[str, ...] = (), retry_after: float | None = None
) -> Callable[[grpc.ServicerContext], Iterator[pb.StreamCompleteResponse]]:
    def step(context: grpc.ServicerContext) -> Iterator[pb.StreamCompleteResponse]:
        for text in after:
            yield pb.StreamCompleteResponse(delta=pb.Delta(content=text))
        fail(code, retry_after=retry_after)(context)

    return step


def until_cancelled(
    scripted: Scripted,
) -> Callable[[grpc.ServicerContext], Iterator[pb.StreamCompleteResponse]]:
    """One delta, then nothing until the call ends, which only the caller can do in time.

    The callback runs when the call ends for any reason, so the handler holds
    it open well past WAIT_S (the client's deadline is 2 * WAIT_S): an end seen
    within WAIT_S is the client's cancellation. Stopping the server ends it too.
    """

    def step(context: grpc.ServicerContext) -> Iterator[pb.StreamCompleteResponse]:
        context.add_callback(scripted.cancelled.set)
        yield pb.StreamCompleteResponse(delta=pb.Delta(content="first"))
        scripted.cancelled.wait(3 * WAIT_S)

    return step


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    servicer = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_GatewayServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(WAIT_S)


def test_retry_waits_what_retry_info_asks(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.3), answer("ok")]

    with Client(target, timeout=5, retries=2) as client:
        assert client.complete("chat", USER).text == "ok"

    first, second = servicer.seen
    assert second.at - first.at >= 0.3
    # One deadline for the whole call: the retry gets what is left of it (5 s
    # less the 0.3 s wait), not a fresh 5 s. The margin absorbs how coarsely
    # grpc-timeout carries the deadline.
    assert second.time_remaining is not None
    assert second.time_remaining < 5 - 0.2


async def test_async_retry_waits_what_retry_info_asks(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.3), answer("ok")]

    async with AsyncClient(target, timeout=5) as client:
        assert (await client.complete("chat", USER, retries=1)).text == "ok"

    first, second = servicer.seen
    assert second.at - first.at >= 0.3


def test_retries_are_opt_in(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.01)]

    with Client(target, timeout=5) as client, pytest.raises(RateLimited) as raised:
        client.complete("chat", USER)

    assert raised.value.retry_after == pytest.approx(0.01)
    assert raised.value.reason == "SCRIPTED"
    assert len(servicer.seen) == 1


def test_retries_stop_at_their_number(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.01)] * 3

    with Client(target, timeout=5, retries=2) as client, pytest.raises(RateLimited):
        client.complete("chat", USER)

    assert len(servicer.seen) == 3


def test_rate_limit_without_retry_info_is_not_retried(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.RESOURCE_EXHAUSTED), answer("too late")]

    with Client(target, timeout=5, retries=3) as client, pytest.raises(RateLimited) as raised:
        client.complete("chat", USER)

    assert raised.value.retry_after is None
    assert len(servicer.seen) == 1


def test_retry_info_past_the_deadline_fails_at_once(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=3.0), answer("ok")]

    with Client(target, timeout=1, retries=3) as client:
        started = time.monotonic()
        error = raised_within(WAIT_S, lambda: client.complete("chat", USER))

    assert isinstance(error, RateLimited)
    assert time.monotonic() - started < 1
    assert len(servicer.seen) == 1


def test_unavailable_is_retried_with_backoff(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.UNAVAILABLE), answer("ok")]

    with Client(target, timeout=5, retries=1) as client:
        assert client.complete("chat", USER).text == "ok"

    assert len(servicer.seen) == 2


def test_invalid_argument_is_never_retried(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.complete = [fail(grpc.StatusCode.INVALID_ARGUMENT), answer("ok")]

    with Client(target, timeout=5, retries=3) as client, pytest.raises(InvalidArgument):
        client.complete("chat", USER)

    assert len(servicer.seen) == 1


def test_stream_is_retried_before_its_first_event(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.stream = [failing_stream(grpc.StatusCode.UNAVAILABLE), events("x", "y")]

    with Client(target, timeout=5, retries=1) as client:
        stream = client.stream("chat", USER)
        assert list(stream) == ["x", "y"]

    assert stream.final is not None
    assert stream.final.usage.output_tokens == 2
    assert len(servicer.seen) == 2


async def test_async_stream_is_not_retried_once_it_started(
    scripted: tuple[Scripted, str],
) -> None:
    servicer, target = scripted
    servicer.stream = [failing_stream(grpc.StatusCode.UNAVAILABLE, after=("x",)), events("y")]
    async with AsyncClient(target, timeout=5, retries=3) as client:
        stream = client.stream("chat", USER)
        assert await anext(stream) == "x"
        with pytest.raises(Unavailable):
            await anext(stream)

    assert len(servicer.seen) == 1


def test_closing_a_stream_early_cancels_the_call(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    servicer.stream = [until_cancelled(servicer)]

    with Client(target, timeout=WAIT_S * 2) as client:
        with client.stream("chat", USER) as stream:
            assert next(stream) == "first"
        assert servicer.cancelled.wait(WAIT_S)
        assert next(stream, None) is None
        assert stream.final is None


async def test_closing_an_async_stream_early_cancels_the_call(
    scripted: tuple[Scripted, str],
) -> None:
    servicer, target = scripted
    servicer.stream = [until_cancelled(servicer)]

    async with AsyncClient(target, timeout=WAIT_S * 2) as client:
        async with client.stream("chat", USER) as stream:
            assert await anext(stream) == "first"
        # The server sets the event from its own thread: wait for it without
        # blocking the loop that must send the cancellation.
        assert await asyncio.to_thread(servicer.cancelled.wait, WAIT_S)
        assert await anext(stream, None) is None


def test_active_span_sends_its_traceparent(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    tracer = TracerProvider().get_tracer("caller")

    with Client(target, api_key="sk-test", timeout=5) as client:
        with tracer.start_as_current_span("caller") as span:
            client.list_models()
        client.list_models()

    context = span.get_span_context()
    with_span, without = servicer.seen
    assert with_span.metadata["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    assert with_span.metadata["authorization"] == "Bearer sk-test"
    assert "traceparent" not in without.metadata


async def test_async_active_span_sends_its_traceparent(scripted: tuple[Scripted, str]) -> None:
    servicer, target = scripted
    tracer = TracerProvider().get_tracer("caller")

    async with AsyncClient(target, timeout=5) as client:
        with tracer.start_as_current_span("caller") as span:
            await client.complete("chat", USER)

    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert servicer.seen[0].metadata["traceparent"].split("-")[1] == trace_id
    assert "authorization" not in servicer.seen[0].metadata
