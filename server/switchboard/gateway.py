"""The orchestration of one call: resolve -> estimate -> route -> admit -> call -> account.

The gateway speaks domain types only. Its collaborators (provider, router,
admission, clock, sleep) are passed in by the composition root, so a test
can drive it with a fake clock and a scripted provider.

Every reservation taken before an attempt is settled on every way out of
it: committed with the real usage on success (streams: at their end, or
with what was delivered when the caller leaves early), released when the
attempt failed or was cancelled before it consumed anything.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
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
    RateLimitHint,
    RouteFacts,
    StreamDelta,
    StreamEvent,
    StreamFinal,
    Usage,
)
from switchboard.errors import (
    AllCoolingDown,
    CapacityExhausted,
    ContentPolicyViolation,
    ContextWindowExceeded,
    DeadlineExceeded,
    ModelNotFound,
    NoDeploymentAvailable,
    ProviderError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from switchboard.limits.admission import Admission, Refusal, Reservation, deployment_key
from switchboard.providers import Provider, ProviderStream
from switchboard.routing import CallKind, FallbackKind, HealthView, Planner, Router
from switchboard.telemetry.recorder import AttemptSpan, Recorder
from switchboard.telemetry.setup import Telemetry

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# The shortest wait worth sleeping for; guards against spinning on a zero wait.
MIN_WAIT_S = 0.001


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """A deployment as ListModels shows it: health, load and limiter headroom now."""

    deployment: Deployment
    health: HealthView
    in_flight: int
    requests_remaining: int | None
    tokens_remaining: int | None


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    value: T
    deployment: Deployment
    model_group: str
    fallback_depth: int
    started: float
    reservation: Reservation
    prompt_tokens: int
    explored: bool
    queued_s: float
    span: AttemptSpan
    candidates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Pick:
    deployment: Deployment
    reservation: Reservation
    explored: bool
    # The eligible deployments the strategy chose among.
    candidates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _OpenStream:
    stream: ProviderStream
    chunks: AsyncIterator[ProviderChunk]
    first: ProviderChunk


@dataclass(slots=True)
class _Call:
    """What one call has learnt so far, across its passes over the fallback chain."""

    group: str
    kind: CallKind
    prompt_tokens: int
    attempts: list[Attempt]
    failures: list[ProviderError] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    used: Counter[str] = field(default_factory=Counter)
    queued_s: float = 0.0


@dataclass(slots=True)
class _Blocked:
    """Why a pass over the chain admitted nothing."""

    refusals: list[Refusal] = field(default_factory=list)
    cooling_until: list[float] = field(default_factory=list)
    cooling_for_quota: bool = True
    too_small: ContextWindowExceeded | None = None
    # Refused by the caller's own key: no deployment or fallback can help until it frees up.
    by_caller: Refusal | None = None


class Gateway:
    def __init__(
        self,
        *,
        settings: Settings,
        provider: Provider,
        planner: Planner,
        router: Router,
        admission: Admission,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        recorder: Recorder | None = None,
    ) -> None:
        self._recorder = recorder or Recorder(Telemetry(), clock)
        self._settings = settings
        self._provider = provider
        self._planner = planner
        self._router = router
        self._admission = admission
        self._clock = clock
        self._sleep = sleep

    @property
    def settings(self) -> Settings:
        return self._settings

    async def aclose(self) -> None:
        """Release the provider's pooled connections; after the server has stopped."""
        await self._provider.aclose()

    @property
    def admission(self) -> Admission:
        return self._admission

    def status(self, deployment: Deployment) -> DeploymentStatus:
        requests, tokens = self._admission.headroom(deployment_key(deployment.id))
        return DeploymentStatus(
            deployment=deployment,
            health=self._router.health(deployment),
            in_flight=self._router.in_flight(deployment),
            requests_remaining=requests,
            tokens_remaining=tokens,
        )

    def _group_of(self, request: CompletionRequest) -> str:
        """The group a call asked for, for telemetry (the name as sent when unknown)."""
        return self._settings.resolve(request.model) or request.model

    def resolve(self, model: str) -> str:
        group = self._settings.resolve(model)
        if group is None:
            raise ModelNotFound(model)
        return group

    async def complete(self, request: CompletionRequest, *, deadline: float | None) -> Completion:
        try:
            completion = await self._complete(request, deadline)
        except BaseException as exc:
            self._recorder.call_failed(self._group_of(request), exc, caller=_caller_name(request))
            raise
        self._recorder.call_succeeded(
            self._group_of(request), completion.route, caller=_caller_name(request)
        )
        return completion

    async def _complete(self, request: CompletionRequest, deadline: float | None) -> Completion:
        group = self.resolve(request.model)
        attempts: list[Attempt] = []

        async def call(deployment: Deployment, timeout_s: float) -> ProviderResponse:
            return await self._provider.complete(deployment, request, timeout_s=timeout_s)

        answer = await self._route(request, group, CallKind.COMPLETE, call, deadline, attempts)
        deployment, response = answer.deployment, answer.value
        answer.span.succeeded(response)
        self._router.finished(deployment)
        usage = response.usage
        # A provider that reports no usage is charged the whole reservation.
        answer.reservation.commit(usage.total_tokens or answer.reservation.tokens)
        latency = self._clock() - answer.started
        self._router.succeeded(deployment, CallKind.COMPLETE, latency, usage.output_tokens)
        if response.rate_limit is not None:
            self._tighten(deployment, response.rate_limit, answer.reservation.tokens)
        attempts.append(self._attempt(deployment, answer.model_group, Outcome.SUCCESS, latency))
        return Completion(response=response, route=self._facts(answer, attempts, usage))

    async def stream(
        self, request: CompletionRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream events; falls back only until the first chunk reaches the caller.

        Closing this generator early (the caller cancelled) closes the
        upstream stream at once and settles the reservation with what was
        delivered.
        """
        events = self._stream(request, deadline)
        try:
            async for event in events:
                if isinstance(event, StreamFinal):
                    self._recorder.call_succeeded(
                        self._group_of(request),
                        event.route,
                        time_to_first_chunk_s=event.time_to_first_chunk_s,
                        caller=_caller_name(request),
                    )
                yield event
        except BaseException as exc:
            self._recorder.call_failed(self._group_of(request), exc, caller=_caller_name(request))
            raise
        finally:
            await events.aclose()

    async def _stream(
        self, request: CompletionRequest, deadline: float | None
    ) -> AsyncGenerator[StreamEvent, None]:
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

        answer = await self._route(request, group, CallKind.STREAM, open_stream, deadline, attempts)
        opened, deployment, reservation = answer.value, answer.deployment, answer.reservation
        span = answer.span
        first_chunk_s = self._clock() - answer.started
        span.started_streaming(first_chunk_s)
        self._router.succeeded(deployment, CallKind.STREAM, first_chunk_s, output_tokens=None)
        ended = False
        first_chunk_at: float | None = None
        response_id = model = ""
        finish = FinishReason.STOP
        usage: Usage | None = None
        delivered = 0
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
                    delivered += chunk.pieces
                    span.add_output(chunk.content)
                    yield StreamDelta(content=chunk.content, tool_calls=chunk.tool_calls)
                chunk = await anext(opened.chunks, None)
            if usage is None:
                # No usage reported: a streamed chunk is about one token.
                usage = Usage(input_tokens=answer.prompt_tokens, output_tokens=delivered)
            reservation.commit(usage.total_tokens)
            span.streamed(response_id=response_id, model=model, finish=finish, usage=usage)
            ended = True
        except ProviderError as err:
            err.deployment = err.deployment or deployment.id
            if err.retryable:
                self._router.failed(deployment, retry_after=err.retry_after, kind=CallKind.STREAM)
            span.failed(err)
            raise
        except BaseException as exc:
            if not ended:
                span.failed(exc)
            raise
        finally:
            # Left early (cancel, mid-stream failure): what was delivered was consumed.
            if delivered:
                reservation.commit(answer.prompt_tokens + delivered)
            else:
                reservation.release()
            self._router.finished(deployment)
            await opened.stream.aclose()
        attempts.append(
            self._attempt(
                deployment, answer.model_group, Outcome.SUCCESS, self._clock() - answer.started
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
        request: CompletionRequest,
        group: str,
        kind: CallKind,
        call: Callable[[Deployment, float], Awaitable[T]],
        deadline: float | None,
        attempts: list[Attempt],
    ) -> _Answer[T]:
        """Admit and call deployments of `group`, then its fallbacks, until one answers.

        A pass that admits nothing (every candidate out of headroom or
        cooling down) waits for the earliest to free up, when that fits in
        the deadline and the queue bound, and passes again.
        """
        state = _Call(
            group=group,
            kind=kind,
            prompt_tokens=self._provider.estimate_prompt_tokens(request),
            attempts=attempts,
        )
        while True:
            blocked = _Blocked()
            answer = await self._pass(request, state, blocked, call, deadline)
            if answer is not None:
                return answer
            wait = self._wait(blocked)
            if wait is not None and wait <= self._queue_budget(state, deadline):
                await self._sleep(wait)
                state.queued_s += wait
                continue
            raise self._exhausted(state, blocked, wait)

    async def _pass(
        self,
        request: CompletionRequest,
        state: _Call,
        blocked: _Blocked,
        call: Callable[[Deployment, float], Awaitable[T]],
        deadline: float | None,
    ) -> _Answer[T] | None:
        chain: list[str] = [
            state.group,
            *self._fallbacks(request, state.group, FallbackKind.GENERAL),
        ]
        per_group = 1 + self._settings.router.num_retries
        depth = 0
        while depth < len(chain):
            current = chain[depth]
            switch_to: FallbackKind | None = None
            while state.used[current] < per_group:
                picked = self._admit(request, state, current, blocked)
                if picked is None:
                    break
                deployment, reservation, explored = (
                    picked.deployment,
                    picked.reservation,
                    picked.explored,
                )
                state.used[current] += 1
                state.tried.add(deployment.id)
                try:
                    timeout_s = self._attempt_timeout(deployment, deadline)
                except BaseException:
                    reservation.release()
                    raise
                started = self._clock()
                self._router.started(deployment)
                span = self._recorder.attempt(
                    deployment, request, stream=state.kind is CallKind.STREAM
                )
                fault = request.fault
                try:
                    if fault is not None and fault.applies(deployment.id, len(state.attempts)):
                        raise fault.error(deployment.id)
                    value = await call(deployment, timeout_s)
                except ProviderError as err:
                    span.failed(err)
                    self._router.finished(deployment)
                    reservation.release()
                    switch_to = self._failed(err, deployment, current, started, state)
                    if switch_to is not None:
                        break
                    continue
                except BaseException as exc:
                    span.failed(exc)
                    self._router.finished(deployment)
                    reservation.release()
                    raise
                return _Answer(
                    value,
                    deployment,
                    current,
                    depth,
                    started,
                    reservation,
                    state.prompt_tokens,
                    explored,
                    state.queued_s,
                    span,
                    picked.candidates,
                )
            if blocked.by_caller is not None:
                return None
            if switch_to is None and blocked.too_small is not None and current == state.group:
                switch_to = FallbackKind.CONTEXT_WINDOW
            if switch_to is not None:
                targets = self._fallbacks(request, state.group, switch_to)
                if not targets:
                    raise (
                        state.failures[-1]
                        if state.failures
                        else blocked.too_small
                        or (NoDeploymentAvailable(state.group, state.failures))
                    )
                chain = [*chain[: depth + 1], *(t for t in targets if t not in chain)]
            depth += 1
        return None

    def _fallbacks(
        self, request: CompletionRequest, group: str, kind: FallbackKind
    ) -> tuple[str, ...]:
        """The fallback groups of `group` this caller may use.

        A caller key limited to some models is never served by a group outside
        them, fallback or not: the limit is also what it may cost.
        """
        targets = self._planner.fallbacks(group, kind)
        caller = request.caller
        if caller is None or caller.groups is None:
            return targets
        return tuple(t for t in targets if t in caller.groups)

    def _admit(
        self, request: CompletionRequest, state: _Call, group: str, blocked: _Blocked
    ) -> _Pick | None:
        """Choose among the eligible deployments the first that the limiter admits."""
        eligible = self._router.eligible(
            group, exclude=state.tried, prompt_tokens=state.prompt_tokens
        )
        if eligible.cooling_until is not None:
            blocked.cooling_until.append(eligible.cooling_until)
            blocked.cooling_for_quota = blocked.cooling_for_quota and eligible.cooling_for_quota
        if eligible.too_small and not eligible.candidates and group == state.group:
            limits = sorted({d.max_input_tokens or 0 for d in eligible.too_small})
            blocked.too_small = ContextWindowExceeded(
                f"the prompt (about {state.prompt_tokens} tokens) exceeds the context window "
                f"of every deployment of {group!r} (max_input_tokens {limits[-1]})"
            )
        caller = request.caller
        extra_keys = (caller.limit_key,) if caller is not None and caller.limit_key else ()
        candidates = list(eligible.candidates)
        while candidates:
            decision = self._router.choose(candidates, state.kind)
            deployment = decision.deployment
            tokens = state.prompt_tokens + self._output_reservation(request, deployment)
            # One atomic acquire for the deployment's limits and the caller's.
            result = self._admission.try_reserve(deployment, tokens, extra_keys)
            if isinstance(result, Reservation):
                considered = tuple(d.id for d in eligible.candidates)
                return _Pick(deployment, result, decision.explored, considered)
            if result.key in extra_keys:
                # The caller's limit refuses every deployment alike: stop asking.
                blocked.by_caller = result
                return None
            blocked.refusals.append(result)
            candidates.remove(deployment)
        return None

    def _output_reservation(self, request: CompletionRequest, deployment: Deployment) -> int:
        return (
            request.sampling.max_tokens
            or deployment.max_output_tokens
            or self._settings.limits.default_max_tokens
        )

    def _failed(
        self,
        err: ProviderError,
        deployment: Deployment,
        group: str,
        started: float,
        state: _Call,
    ) -> FallbackKind | None:
        """Record a failed attempt; raise it if nothing else may help, else say where to go."""
        elapsed = self._clock() - started
        err.deployment = err.deployment or deployment.id
        state.attempts.append(
            self._attempt(deployment, group, err.outcome, elapsed, error=err.message)
        )
        state.failures.append(err)
        if isinstance(err, ContextWindowExceeded):
            return FallbackKind.CONTEXT_WINDOW
        if isinstance(err, ContentPolicyViolation):
            return FallbackKind.CONTENT_POLICY
        if not err.retryable:
            raise err
        self._router.failed(
            deployment,
            retry_after=err.retry_after if isinstance(err, UpstreamRateLimited) else None,
            seconds=elapsed if isinstance(err, UpstreamTimeout) else None,
            kind=state.kind,
        )
        return None

    def _tighten(self, deployment: Deployment, hint: RateLimitHint, typical_tokens: int) -> None:
        """The provider's own count is the truth: when it says it is spent, stop sending.

        Our limiter cannot know of traffic from elsewhere on the same provider
        key; its headers can. A deployment with no requests left, or fewer
        tokens than a call like this one reserves, is paused until the reset.
        """
        pauses = []
        if hint.requests_remaining == 0 and hint.requests_reset_s:
            pauses.append(hint.requests_reset_s)
        tokens = hint.tokens_remaining
        if tokens is not None and tokens < typical_tokens and hint.tokens_reset_s:
            pauses.append(hint.tokens_reset_s)
        if pauses:
            self._router.pause(deployment, max(pauses))

    def _wait(self, blocked: _Blocked) -> float | None:
        if blocked.by_caller is not None:
            refusal = blocked.by_caller
            return None if refusal.never else max(MIN_WAIT_S, refusal.retry_after)
        now = self._clock()
        waits = [r.retry_after for r in blocked.refusals if not r.never]
        waits += [until - now for until in blocked.cooling_until]
        return max(MIN_WAIT_S, min(waits)) if waits else None

    def _queue_budget(self, state: _Call, deadline: float | None) -> float:
        budget = self._settings.router.max_queue_wait_s - state.queued_s
        if deadline is not None:
            budget = min(budget, deadline - self._clock())
        return budget

    def _exhausted(self, state: _Call, blocked: _Blocked, wait: float | None) -> Exception:
        """The error for a call that found no deployment and may not wait any longer."""
        if blocked.by_caller is not None:
            return self._caller_exhausted(blocked.by_caller)
        refusals = [r for r in blocked.refusals if not r.never]
        if refusals:
            first = min(refusals, key=lambda r: r.retry_after)
            return CapacityExhausted(
                f"no deployment of {state.group!r} has room for {first.tokens} tokens "
                f"within the wait allowed; {first.key} frees up in {first.retry_after:.3f}s",
                limit_key=first.key,
                wait_s=first.retry_after,
            )
        if state.failures:
            return NoDeploymentAvailable(state.group, state.failures)
        if blocked.cooling_until:
            return AllCoolingDown(
                state.group, wait if wait is not None else 0.0, quota=blocked.cooling_for_quota
            )
        if blocked.refusals:
            largest = max(blocked.refusals, key=lambda r: r.tokens)
            return CapacityExhausted(
                f"the call needs {largest.tokens} tokens, more than the limit of "
                f"{largest.key}: it can never be admitted",
                limit_key=largest.key,
                wait_s=None,
            )
        if blocked.too_small is not None:
            return blocked.too_small
        return NoDeploymentAvailable(state.group, state.failures)

    @staticmethod
    def _caller_exhausted(refusal: Refusal) -> CapacityExhausted:
        """The caller's own limit is spent: say so, whatever room the deployments have."""
        if refusal.never:
            message = (
                f"the call needs {refusal.tokens} tokens, more than the limit of "
                f"{refusal.key}: it can never be admitted"
            )
            return CapacityExhausted(message, limit_key=refusal.key, wait_s=None)
        return CapacityExhausted(
            f"the caller's limit {refusal.key} has no room for {refusal.tokens} tokens "
            f"within the wait allowed; it frees up in {refusal.retry_after:.3f}s",
            limit_key=refusal.key,
            wait_s=refusal.retry_after,
        )

    def _attempt_timeout(self, deployment: Deployment, deadline: float | None) -> float:
        if deadline is None:
            return deployment.timeout_s
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before an attempt could start")
        return min(left, deployment.timeout_s)

    @staticmethod
    def _attempt(
        deployment: Deployment, group: str, outcome: Outcome, latency_s: float, error: str = ""
    ) -> Attempt:
        return Attempt(
            deployment=deployment.id,
            model_group=group,
            outcome=outcome,
            latency_s=latency_s,
            error=error,
        )

    def _facts(self, answer: _Answer[Any], attempts: list[Attempt], usage: Usage) -> RouteFacts:
        return RouteFacts(
            deployment=answer.deployment.id,
            model_group=answer.model_group,
            attempts=tuple(attempts),
            fallback_depth=answer.fallback_depth,
            cost_usd=self._provider.price(answer.deployment, usage),
            strategy=self._router.strategy_name,
            explored=answer.explored,
            queued_s=answer.queued_s,
            candidates=answer.candidates,
        )


def _caller_name(request: CompletionRequest) -> str | None:
    return request.caller.name if request.caller is not None else None
