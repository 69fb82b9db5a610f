"""The blocking client, on grpc's sync API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol, Unpack

import grpc

from ._errors import Internal, from_rpc_error
from ._pb import gateway_pb2 as pb
from ._pb.gateway_pb2_grpc import GatewayStub
from ._policy import CallPolicy, call_metadata, policy_for
from ._request import (
    CompleteParams,
    MessageLike,
    ToolCallBuilder,
    build_request,
    check_params,
    completion,
    invalidate_request,
    model_list,
    stats,
    stats_request,
    stream_final,
)
from ._transport import channel_credentials
from ._types import Completion, ModelList, Stats, StreamFinal, ToolCall

ChannelOptions = Sequence[tuple[str, Any]]
USER_AGENT = "switchboard-client-python/0.1.0"


class _StreamingCall(Protocol):
    def __next__(self) -> pb.StreamCompleteResponse: ...
    def cancel(self) -> bool: ...


class Client:
    """A Switchboard gateway at `target` (`host:port`), over one gRPC channel.

    `api_key` is sent as `authorization: Bearer <key>` on every call;
    `credentials` (`grpc.ssl_channel_credentials()`, say) makes the channel
    TLS, else it is plaintext. `timeout` is the default deadline in seconds of
    each call, retries and their waits included; `retries` the default number
    of retries (none unless asked for). Thread-safe; close it, or use it as a
    context manager, to release the channel.
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        retries: int = 0,
        options: ChannelOptions = (),
        insecure: bool = False,
    ) -> None:
        CallPolicy.start(timeout, retries)  # refuse bad defaults now, not at the first call
        self._api_key = api_key
        self._timeout = timeout
        self._retries = retries
        opts = [("grpc.primary_user_agent", USER_AGENT), *options]
        chosen = channel_credentials(target, credentials, insecure=insecure)
        self._channel = (
            grpc.secure_channel(target, chosen, opts)
            if chosen is not None
            else grpc.insecure_channel(target, opts)
        )
        self._stub = GatewayStub(self._channel)

    def complete(
        self, model: str, messages: Iterable[MessageLike], **params: Unpack[CompleteParams]
    ) -> Completion:
        """The whole completion of `messages` by `model` (a model group or an alias)."""
        check_params("complete", params)
        request = build_request(model, messages, params)
        policy = policy_for(params, self._timeout, self._retries)
        response: pb.CompleteResponse = self._call(
            lambda timeout: self._stub.Complete(
                request, timeout=timeout, metadata=call_metadata(self._api_key)
            ),
            policy,
        )
        return completion(response)

    def stream(
        self, model: str, messages: Iterable[MessageLike], **params: Unpack[CompleteParams]
    ) -> Stream:
        """An iterator of the completion's text deltas; its `final` is set once it ends.

        The call starts on the first `next()`; closing the stream (or leaving
        its `with` block) before the end cancels it.
        """
        check_params("stream", params)
        request = build_request(model, messages, params)
        policy = policy_for(params, self._timeout, self._retries)

        def start(timeout: float | None) -> _StreamingCall:
            call: _StreamingCall = self._stub.StreamComplete(
                request, timeout=timeout, metadata=call_metadata(self._api_key)
            )
            return call

        return Stream(start, policy)

    def list_models(self, *, timeout: float | None = None) -> ModelList:
        """The model groups, their deployments as routing sees them now, and the aliases."""
        policy = policy_for({"timeout": timeout}, self._timeout, self._retries)
        response: pb.ListModelsResponse = self._call(
            lambda t: self._stub.ListModels(
                pb.ListModelsRequest(), timeout=t, metadata=call_metadata(self._api_key)
            ),
            policy,
        )
        return model_list(response)

    def invalidate_cache(
        self, *, namespace: str = "", tags: Sequence[str] = (), timeout: float | None = None
    ) -> int:
        """Drops the cached answers built on any of `tags` (only those of `namespace`,
        when both are given), or every answer of `namespace`; returns how many.

        For when a document the prompts were built from changed: its answers
        would otherwise be served until they expire. Raises PermissionDenied
        unless the key is an admin one (when the gateway has keys), and
        FailedPrecondition (reason CACHE_DISABLED) from a gateway without a cache.
        """
        request = invalidate_request(namespace, tags)
        policy = policy_for({"timeout": timeout}, self._timeout, self._retries)
        response: pb.InvalidateCacheResponse = self._call(
            lambda t: self._stub.InvalidateCache(
                request, timeout=t, metadata=call_metadata(self._api_key)
            ),
            policy,
        )
        return response.removed

    def get_stats(self, period: str = "day", *, timeout: float | None = None) -> Stats:
        """Calls, errors, latency, tokens, spend and budgets over the current UTC
        `period` (`hour`, `day`, `month`) or all time (`total`).

        A key that is not an admin key sees only its own key and team lines.
        """
        request = stats_request(period)
        policy = policy_for({"timeout": timeout}, self._timeout, self._retries)
        response: pb.GetStatsResponse = self._call(
            lambda t: self._stub.GetStats(
                request, timeout=t, metadata=call_metadata(self._api_key)
            ),
            policy,
        )
        return stats(response)

    @staticmethod
    def _call(attempt: Callable[[float | None], Any], policy: CallPolicy) -> Any:
        while True:
            try:
                return attempt(policy.timeout())
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                wait = policy.wait_before_retry(error)
                if wait is None:
                    raise error from exc
            time.sleep(wait)  # RetryInfo's delay or the backoff, within the deadline

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Stream(Iterator[str]):
    """The text deltas of one StreamComplete call, then its `final` facts.

    With retries, a call that fails before its first event is started again
    (within the deadline); once an event arrived, a failure is raised, since
    the caller has already seen part of an answer.
    """

    def __init__(self, start: Callable[[float | None], _StreamingCall], policy: CallPolicy):
        self._start = start
        self._policy = policy
        self._call: _StreamingCall | None = None
        self._started = False  # an event arrived: no more retries
        self._done = False
        self._texts: list[str] = []
        self._tools = ToolCallBuilder()
        self.final: StreamFinal | None = None

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._texts)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls received so far, their fragments joined."""
        return self._tools.calls()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        while not self._done:
            if self._call is None:
                self._call = self._start(self._policy.timeout())
            try:
                event = next(self._call)
            except StopIteration:
                self._done = True
                if self.final is None:
                    raise Internal("the stream ended without its final event") from None
                raise
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                wait = None if self._started else self._policy.wait_before_retry(error)
                if wait is None:
                    self._done = True
                    raise error from exc
                self._call = None
                time.sleep(wait)  # RetryInfo's delay or the backoff, within the deadline
                continue
            self._started = True
            text = take_event(event, self._tools, self)
            if text:
                self._texts.append(text)
                return text
        raise StopIteration

    def close(self) -> None:
        """Cancels the call if it is still running; the stream then ends."""
        if not self._done and self._call is not None:
            self._call.cancel()
        self._done = True

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _HasFinal(Protocol):
    final: StreamFinal | None


def take_event(event: pb.StreamCompleteResponse, tools: ToolCallBuilder, into: _HasFinal) -> str:
    """A delta's text (recording its tool-call fragments), or "" after storing the final."""
    kind = event.WhichOneof("event")
    if kind == "delta":
        tools.add(event.delta.tool_calls)
        return event.delta.content
    if kind == "final":
        into.final = stream_final(event.final)
    return ""
