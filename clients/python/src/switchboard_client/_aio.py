"""The asyncio client, on grpc.aio: the same methods as `Client`, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Protocol, TypeVar, Unpack

import grpc

from ._client import USER_AGENT, ChannelOptions, take_event
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
)
from ._transport import channel_credentials
from ._types import Completion, ModelList, Stats, StreamFinal, ToolCall

_T = TypeVar("_T")


class _StreamingCall(Protocol):
    def __aiter__(self) -> AsyncIterator[pb.StreamCompleteResponse]: ...
    def cancel(self) -> bool: ...


class AsyncClient:
    """`Client` for asyncio: same arguments, and every method but `stream` is awaitable.

    Its channel belongs to the event loop it is first used in; close it with
    `await client.close()` or `async with`.
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
            grpc.aio.secure_channel(target, chosen, opts)
            if chosen is not None
            else grpc.aio.insecure_channel(target, opts)
        )
        self._stub = GatewayStub(self._channel)

    async def complete(
        self, model: str, messages: Iterable[MessageLike], **params: Unpack[CompleteParams]
    ) -> Completion:
        """The whole completion of `messages` by `model` (a model group or an alias)."""
        check_params("complete", params)
        request = build_request(model, messages, params)
        policy = policy_for(params, self._timeout, self._retries)

        async def attempt(left: float | None) -> pb.CompleteResponse:
            return await self._stub.Complete(
                request, timeout=left, metadata=call_metadata(self._api_key)
            )

        return completion(await _call(attempt, policy))

    def stream(
        self, model: str, messages: Iterable[MessageLike], **params: Unpack[CompleteParams]
    ) -> AsyncStream:
        """An async iterator of the completion's text deltas; its `final` is set once it ends.

        Not a coroutine: `async for delta in client.stream(...)`. The call
        starts on the first `__anext__`; `aclose()` (or leaving its
        `async with` block) before the end cancels it.
        """
        check_params("stream", params)
        request = build_request(model, messages, params)
        policy = policy_for(params, self._timeout, self._retries)

        def start(timeout: float | None) -> _StreamingCall:
            call: _StreamingCall = self._stub.StreamComplete(
                request, timeout=timeout, metadata=call_metadata(self._api_key)
            )
            return call

        return AsyncStream(start, policy)

    # `timeout` as in Client.list_models: a gRPC deadline, which asyncio.timeout is not.
    async def list_models(self, *, timeout: float | None = None) -> ModelList:  # noqa: ASYNC109
        """The model groups, their deployments as routing sees them now, and the aliases."""
        policy = policy_for({"timeout": timeout}, self._timeout, self._retries)

        async def attempt(t: float | None) -> pb.ListModelsResponse:
            return await self._stub.ListModels(
                pb.ListModelsRequest(), timeout=t, metadata=call_metadata(self._api_key)
            )

        return model_list(await _call(attempt, policy))

    async def invalidate_cache(
        self,
        *,
        namespace: str = "",
        tags: Sequence[str] = (),
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC deadline, as in list_models)
    ) -> int:
        """As `Client.invalidate_cache`: drops the answers built on `tags` or of `namespace`."""
        request = invalidate_request(namespace, tags)
        policy = policy_for({"timeout": timeout}, self._timeout, self._retries)

        async def attempt(t: float | None) -> pb.InvalidateCacheResponse:
            return await self._stub.InvalidateCache(
                request, timeout=t, metadata=call_metadata(self._api_key)
            )

        return (await _call(attempt, policy)).removed

    async def get_stats(
        self,
        period: str = "day",
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC deadline, as in list_models)
    ) -> Stats:
        """As `Client.get_stats`: figures and budgets over the current `period`."""
        request = stats_request(period)
        policy = policy_for({"timeout": timeout}, self._timeout, self._retries)

        async def attempt(t: float | None) -> pb.GetStatsResponse:
            return await self._stub.GetStats(
                request, timeout=t, metadata=call_metadata(self._api_key)
            )

        return stats(await _call(attempt, policy))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _call(attempt: Callable[[float | None], Awaitable[_T]], policy: CallPolicy) -> _T:
    while True:
        try:
            return await attempt(policy.timeout())
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            wait = policy.wait_before_retry(error)
            if wait is None:
                raise error from exc
        await asyncio.sleep(wait)  # RetryInfo's delay or the backoff, within the deadline


class AsyncStream(AsyncIterator[str]):
    """The text deltas of one StreamComplete call, then its `final` facts.

    Retries as `Stream` does: only while no event has arrived.
    """

    def __init__(self, start: Callable[[float | None], _StreamingCall], policy: CallPolicy):
        self._start = start
        self._policy = policy
        self._call: _StreamingCall | None = None
        self._events: AsyncIterator[pb.StreamCompleteResponse] | None = None
        self._started = False
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

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> str:
        while not self._done:
            if self._events is None:
                self._call = self._start(self._policy.timeout())
                self._events = self._call.__aiter__()
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                self._done = True
                if self.final is None:
                    raise Internal("the stream ended without its final event") from None
                raise
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                wait = None if self._started else self._policy.wait_before_retry(error)
                if wait is None:
                    self._done = True
                    raise error from exc
                self._call = self._events = None
                await asyncio.sleep(wait)  # RetryInfo's delay or the backoff, within the deadline
                continue
            self._started = True
            text = take_event(event, self._tools, self)
            if text:
                self._texts.append(text)
                return text
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Cancels the call if it is still running; the stream then ends."""
        if not self._done and self._call is not None:
            self._call.cancel()
        self._done = True

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
