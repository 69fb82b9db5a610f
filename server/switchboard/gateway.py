"""The orchestration of one call: resolve -> route -> call -> retry/fallback -> account.

The gateway speaks domain types only. Its collaborators (provider, planner,
clock) are passed in by the composition root, so a test can drive it with
a fake clock and a scripted provider.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from switchboard.config import Deployment, Settings
from switchboard.domain import (
    Attempt,
    Completion,
    CompletionRequest,
    FinishReason,
    Outcome,
    ProviderChunk,
    ProviderResponse,
    RouteFacts,
    StreamDelta,
    StreamEvent,
    StreamFinal,
    Usage,
)
from switchboard.errors import (
    ContentPolicyViolation,
    ContextWindowExceeded,
    DeadlineExceeded,
    ModelNotFound,
    NoDeploymentAvailable,
    ProviderError,
    UpstreamUnavailable,
)
from switchboard.providers import Provider, ProviderStream
from switchboard.routing import FallbackKind, Planner

T = TypeVar("T")
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    value: T
    deployment: Deployment
    model_group: str
    fallback_depth: int
    started: float


@dataclass(frozen=True, slots=True)
class _OpenStream:
    stream: ProviderStream
    chunks: AsyncIterator[ProviderChunk]
    first: ProviderChunk


class Gateway:
    def __init__(
        self, *, settings: Settings, provider: Provider, planner: Planner, clock: Clock
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._planner = planner
        self._clock = clock

    @property
    def settings(self) -> Settings:
        return self._settings

    def resolve(self, model: str) -> str:
        group = self._settings.resolve(model)
        if group is None:
            raise ModelNotFound(model)
        return group

    async def complete(self, request: CompletionRequest, *, deadline: float | None) -> Completion:
        group = self.resolve(request.model)
        attempts: list[Attempt] = []

        async def call(deployment: Deployment, timeout_s: float) -> ProviderResponse:
            return await self._provider.complete(deployment, request, timeout_s=timeout_s)

        answer = await self._route(group, call, deadline, attempts)
        return Completion(
            response=answer.value, route=self._facts(answer, attempts, answer.value.usage)
        )

    async def stream(
        self, request: CompletionRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream events; falls back only until the first chunk reaches the caller.

        Closing this generator early (the caller cancelled) closes the
        upstream stream at once.
        """
        started = self._clock()
        group = self.resolve(request.model)
        attempts: list[Attempt] = []

        async def open_stream(deployment: Deployment, timeout_s: float) -> _OpenStream:
            upstream = await self._provider.stream(deployment, request, timeout_s=timeout_s)
            chunks = aiter(upstream)
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                await upstream.aclose()
                raise UpstreamUnavailable(
                    "the stream ended before its first chunk", deployment=deployment.id
                ) from None
            except BaseException:
                await upstream.aclose()
                raise
            return _OpenStream(upstream, chunks, first)

        answer = await self._route(group, open_stream, deadline, attempts, record_success=False)
        opened, deployment = answer.value, answer.deployment
        first_chunk_at: float | None = None
        response_id = model = ""
        finish = FinishReason.STOP
        usage = Usage()
        try:
            chunk: ProviderChunk | None = opened.first
            while chunk is not None:
                response_id = response_id or chunk.id
                model = model or chunk.model
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.content or chunk.tool_calls:
                    if first_chunk_at is None:
                        first_chunk_at = self._clock()
                    yield StreamDelta(content=chunk.content, tool_calls=chunk.tool_calls)
                chunk = await anext(opened.chunks, None)
        except ProviderError as err:
            err.deployment = err.deployment or deployment.id
            raise
        finally:
            await opened.stream.aclose()
        attempts.append(
            Attempt(
                deployment=deployment.id,
                model_group=answer.model_group,
                outcome=Outcome.SUCCESS,
                latency_s=self._clock() - answer.started,
            )
        )
        yield StreamFinal(
            id=response_id,
            model=model,
            finish_reason=finish,
            usage=usage,
            route=self._facts(answer, attempts, usage),
            time_to_first_chunk_s=(first_chunk_at or self._clock()) - started,
        )

    async def _route(
        self,
        group: str,
        call: Callable[[Deployment, float], Awaitable[T]],
        deadline: float | None,
        attempts: list[Attempt],
        *,
        record_success: bool = True,
    ) -> _Answer[T]:
        """Try deployments of `group`, then its fallbacks, until one answers."""
        failures: list[ProviderError] = []
        chain: list[str] = [group, *self._planner.fallbacks(group, FallbackKind.GENERAL)]
        depth = 0
        while depth < len(chain):
            current = chain[depth]
            switch_to: FallbackKind | None = None
            for deployment in self._planner.deployments(current):
                timeout_s = self._attempt_timeout(deployment, deadline)
                started = self._clock()
                try:
                    value = await call(deployment, timeout_s)
                except ProviderError as err:
                    err.deployment = err.deployment or deployment.id
                    attempts.append(
                        Attempt(
                            deployment=deployment.id,
                            model_group=current,
                            outcome=err.outcome,
                            latency_s=self._clock() - started,
                            error=err.message,
                        )
                    )
                    failures.append(err)
                    if isinstance(err, ContextWindowExceeded):
                        switch_to = FallbackKind.CONTEXT_WINDOW
                    elif isinstance(err, ContentPolicyViolation):
                        switch_to = FallbackKind.CONTENT_POLICY
                    elif not err.retryable:
                        raise
                    if switch_to is not None:
                        break
                    continue
                if record_success:
                    attempts.append(
                        Attempt(
                            deployment=deployment.id,
                            model_group=current,
                            outcome=Outcome.SUCCESS,
                            latency_s=self._clock() - started,
                        )
                    )
                return _Answer(value, deployment, current, depth, started)
            if switch_to is not None:
                targets = self._planner.fallbacks(group, switch_to)
                if not targets:
                    raise failures[-1]
                chain = [*chain[: depth + 1], *targets]
            depth += 1
        raise NoDeploymentAvailable(group, failures)

    def _attempt_timeout(self, deployment: Deployment, deadline: float | None) -> float:
        if deadline is None:
            return deployment.timeout_s
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before an attempt could start")
        return min(left, deployment.timeout_s)

    def _facts(self, answer: _Answer[Any], attempts: list[Attempt], usage: Usage) -> RouteFacts:
        return RouteFacts(
            deployment=answer.deployment.id,
            model_group=answer.model_group,
            attempts=tuple(attempts),
            fallback_depth=answer.fallback_depth,
            cost_usd=self._provider.price(answer.deployment, usage),
        )
