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
import contextlib
import dataclasses
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.accounting import AttemptRecord, CallRecord, Ledger
from switchboard.attempt import AttemptScope, Counts
from switchboard.cache.service import ResponseCache, StreamRecorder
from switchboard.config import Deployment, Settings
from switchboard.domain import (
    Attempt,
    Completion,
    CompletionRequest,
    FinishReason,
    Outcome,
    ProviderChunk,
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
    FieldViolation,
    InvalidOutput,
    InvalidRequest,
    ModelNotFound,
    NoDeploymentAvailable,
    ProviderError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    failure_kind,
)
from switchboard.json_output import output_problem
from switchboard.limits.admission import Admission, Refusal, Reservation, deployment_key
from switchboard.limits.budgets import BudgetGuard, BudgetHold
from switchboard.providers import Provider, ProviderStream
from switchboard.routing import CallKind, FallbackKind, HealthView, Planner, Router
from switchboard.routing.aliases import AliasExpander
from switchboard.telemetry.recorder import Recorder
from switchboard.telemetry.setup import Telemetry

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Service(Protocol):
    """Background work that lives as long as the gateway (replica sync, say)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


# The shortest wait worth sleeping for; guards against spinning on a zero wait.
MIN_WAIT_S = 0.001
# Retries of a deployment already tried wait BASE * 2**n, at most MAX, times a jitter in [0.5, 1).
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """A deployment as ListModels shows it: health, load and limiter headroom now."""

    deployment: Deployment
    health: HealthView
    in_flight: int
    requests_remaining: int | None
    tokens_remaining: int | None


@dataclass(frozen=True, slots=True)
class _Pick:
    deployment: Deployment
    reservation: Reservation
    explored: bool
    # The eligible deployments the strategy chose among.
    candidates: tuple[str, ...]


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
    # Set by a failure that sends the call down another fallback chain.
    switch_to: FallbackKind | None = None
    # When each group last failed with something worth retrying.
    failed_at: dict[str, float] = field(default_factory=dict)
    # The request has images: only deployments with vision may take it.
    images: bool = False


@dataclass(slots=True)
class _CallLog:
    """What the accounting needs of a call however it ends: its attempts and budget hold."""

    attempts: list[Attempt] = field(default_factory=list)
    hold: BudgetHold | None = None
    # The stream attempt that reached the caller, until it ends: if the call ends
    # early (the caller left, the stream broke) what it delivered is still priced.
    streaming: AttemptScope | None = None
    # Set once the call was added to the ledger: a stream closed after its final
    # event must not be counted again as cancelled.
    accounted: bool = False


@dataclass(slots=True)
class _Progress:
    """What a stream has said so far, for its final event."""

    response_id: str = ""
    model: str = ""
    finish: FinishReason = FinishReason.STOP
    usage: Usage | None = None
    first_chunk_at: float | None = None
    # The answer's text so far, kept only when it is to be checked at the end.
    text: list[str] | None = None


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
        rng: random.Random | None = None,
        cache: ResponseCache | None = None,
        wall: Clock = time.time,
        ledger: Ledger | None = None,
        budgets: BudgetGuard | None = None,
        services: Sequence[Service] = (),
    ) -> None:
        """`ledger`: where each call's spend and figures are added up (None: nowhere);
        `budgets`: the key, team and provider budgets (None: none); `services`:
        started with the gateway and closed after it."""
        self._services = tuple(services)
        self._recorder = recorder or Recorder(Telemetry(), clock)
        self._settings = settings
        self._provider = provider
        self._planner = planner
        self._router = router
        self._admission = admission
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cache = cache
        self._wall = wall
        self._counts = Counts(started=router.started, finished=router.finished)
        self._aliases = AliasExpander(settings)
        self._ledger = ledger
        self._budgets = budgets
        self._deployments = {d.id: d for d in settings.deployments}
        # Per deployment, USD per input and per output token (prices never change).
        self._rates: dict[str, tuple[float, float]] = {}

    @property
    def settings(self) -> Settings:
        return self._settings

    async def start(self) -> None:
        """Load shared spend (budgets hold from the first call) and start its flushes."""
        await self._admission.start()
        if self._ledger is not None:
            await self._ledger.start()
        for service in self._services:
            await service.start()

    async def aclose(self) -> None:
        """Release the provider's pooled connections; after the server has stopped."""
        await self._provider.aclose()
        for service in self._services:
            await service.aclose()
        await self._admission.aclose()
        if self._cache is not None:
            await self._cache.aclose()
        if self._ledger is not None:
            await self._ledger.aclose()

    @property
    def cache(self) -> ResponseCache | None:
        return self._cache

    @property
    def admission(self) -> Admission:
        return self._admission

    @property
    def ledger(self) -> Ledger | None:
        return self._ledger

    @property
    def budgets(self) -> BudgetGuard | None:
        return self._budgets

    def auto_threshold(self, alias: str) -> float:
        return self._aliases.threshold(alias)

    def rates(self, deployment: Deployment) -> tuple[float, float]:
        """USD per input token and per output token; 0 where the price is unknown."""
        rates = self._rates.get(deployment.id)
        if rates is None:
            per = 1_000_000
            price = self._provider.price
            rates = (
                price(deployment, Usage(input_tokens=per)) / per,
                price(deployment, Usage(output_tokens=per)) / per,
            )
            self._rates[deployment.id] = rates
        return rates

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
        started = self._clock()
        self._recorder.call_started(request)
        request = self._aliases.expand(request)
        log = _CallLog()
        try:
            completion = await self._cached_complete(request, deadline, log)
        except BaseException as exc:
            self._recorder.call_failed(
                self._group_of(request), exc, caller=_caller_name(request), alias=request.alias
            )
            self._account(request, log, started, failure=exc)
            raise
        if request.alias is not None:
            route = dataclasses.replace(completion.route, alias=request.alias)
            completion = Completion(response=completion.response, route=route)
        self._recorder.call_succeeded(
            self._group_of(request), completion.route, caller=_caller_name(request)
        )
        self._account(
            request, log, started, route=completion.route, usage=completion.response.usage
        )
        return completion

    async def _cached_complete(
        self, request: CompletionRequest, deadline: float | None, log: _CallLog
    ) -> Completion:
        cache = self._cache
        if cache is None:
            return await self._complete(request, deadline, log)
        lookup = await cache.lookup(request, self.resolve(request.model))
        if lookup is not None and lookup.hit is not None:
            return cache.completion_of(lookup.hit)
        completion = await self._complete(request, deadline, log)
        if lookup is not None and self._storable(request, completion.response.message.content):
            await cache.store(request, lookup, cache.answer_of(completion))
        return completion

    def _storable(self, request: CompletionRequest, text: str, problem: str = "") -> bool:
        """A JSON answer is cached only if it is the JSON asked for, checked or not:
        a caller that validates must never be served one that fails. Several answers
        (n > 1) are not cached: an entry holds one.

        `problem`: what the call's own check found (a Complete that reaches here
        passed it); the answer is parsed again only when nobody checked it.
        """
        if request.options.answers > 1:
            return False
        rf = request.response_format
        if rf is None or not rf.wants_json:
            return True
        if self._validates(request):
            return not problem
        return output_problem(text, rf) is None

    async def _complete(
        self, request: CompletionRequest, deadline: float | None, log: _CallLog
    ) -> Completion:
        call = self._new_call(request, CallKind.COMPLETE, log)
        async with contextlib.aclosing(self._attempts(request, call, deadline)) as attempts:
            async for attempt in attempts:
                try:
                    async with attempt:
                        self._inject_fault(request, attempt, call)
                        response = await self._provider.complete(
                            attempt.deployment, request, timeout_s=attempt.timeout_s
                        )
                        # A provider that reports no usage is charged the whole reservation;
                        # an answer refused below was paid for all the same.
                        attempt.commit(response.usage.total_tokens or attempt.reservation.tokens)
                        for answer in response.choices or (response.message,):
                            self._check_output(request, attempt, answer.content, response.usage)
                        attempt.span.succeeded(response)
                        attempt.span_ended()
                except ProviderError as err:
                    self._failed(err, attempt, call)
                    continue
                deployment, usage = attempt.deployment, response.usage
                latency = self._clock() - attempt.started
                self._router.succeeded(deployment, CallKind.COMPLETE, latency, usage.output_tokens)
                if response.rate_limit is not None:
                    self._tighten(deployment, response.rate_limit, attempt.reservation.tokens)
                call.attempts.append(
                    self._attempt(deployment, attempt.model_group, Outcome.SUCCESS, latency)
                )
                return Completion(response=response, route=self._facts(attempt, call, usage))
        raise AssertionError("the attempts end by raising")  # pragma: no cover

    async def stream(
        self, request: CompletionRequest, *, deadline: float | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream events; falls back only until the first chunk reaches the caller.

        Closing this generator early (the caller cancelled) closes the
        upstream stream at once and settles the reservation with what was
        delivered.
        """
        started = self._clock()
        self._recorder.call_started(request)
        if request.options.answers > 1:
            raise InvalidRequest([FieldViolation("n", "StreamComplete streams one answer: n 1")])
        request = self._aliases.expand(request)
        log = _CallLog()
        # Without a cache, no layer between: each layer is paid on every chunk.
        events = (
            self._stream(request, deadline, log)
            if self._cache is None
            else self._cached_stream(request, deadline, log)
        )
        try:
            async for event in events:
                if isinstance(event, StreamFinal):
                    if request.alias is not None:
                        route = dataclasses.replace(event.route, alias=request.alias)
                        event = dataclasses.replace(event, route=route)
                    self._recorder.call_succeeded(
                        self._group_of(request),
                        event.route,
                        time_to_first_chunk_s=event.time_to_first_chunk_s,
                        caller=_caller_name(request),
                    )
                    self._account(request, log, started, route=event.route, usage=event.usage)
                yield event
        except BaseException as exc:
            # A caller gone after the final event had its answer: not a failure.
            if not log.accounted:
                self._recorder.call_failed(
                    self._group_of(request), exc, caller=_caller_name(request), alias=request.alias
                )
            self._account(request, log, started, failure=exc)
            raise
        finally:
            await events.aclose()

    async def _cached_stream(
        self, request: CompletionRequest, deadline: float | None, log: _CallLog
    ) -> AsyncGenerator[StreamEvent, None]:
        """A hit replays the stored answer; a miss streams and stores it once whole.

        Only a stream that reached its final event is stored: one the caller
        left, or that failed part way, is not.
        """
        cache = self._cache
        assert cache is not None
        started = self._clock()
        lookup = await cache.lookup(request, self.resolve(request.model))
        if lookup is not None and lookup.hit is not None:
            for replayed in cache.replay(lookup.hit, lambda: self._clock() - started):
                yield replayed
            return
        recorder = StreamRecorder()
        async with contextlib.aclosing(self._stream(request, deadline, log, started)) as events:
            async for event in events:
                if isinstance(event, StreamFinal):
                    if lookup is not None:
                        answer = recorder.answer(event, self._wall())
                        text = "".join(answer.pieces)
                        if self._storable(request, text, event.validation_error):
                            await cache.store(request, lookup, answer)
                elif lookup is not None:
                    recorder.add(event)
                yield event

    async def _stream(
        self,
        request: CompletionRequest,
        deadline: float | None,
        log: _CallLog,
        started: float | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        started = self._clock() if started is None else started
        call = self._new_call(request, CallKind.STREAM, log)
        async with contextlib.aclosing(self._attempts(request, call, deadline)) as attempts:
            async for attempt in attempts:
                deployment = attempt.deployment
                progress = _Progress(text=[] if self._validates(request) else None)
                try:
                    async with attempt:
                        self._inject_fault(request, attempt, call)
                        upstream, chunks, first = await self._open_stream(
                            request, attempt, deadline
                        )
                        async with contextlib.aclosing(upstream):
                            attempt.streaming = True
                            log.streaming = attempt
                            first_chunk_s = attempt.elapsed()
                            attempt.span.started_streaming(first_chunk_s)
                            self._router.succeeded(
                                deployment, CallKind.STREAM, first_chunk_s, output_tokens=None
                            )
                            async for delta in self._relay(attempt, chunks, first, progress):
                                yield delta
                            # No usage reported: a streamed piece is about one token.
                            usage = progress.usage or Usage(
                                input_tokens=attempt.prompt_tokens,
                                output_tokens=attempt.delivered,
                            )
                            attempt.commit(usage.total_tokens)
                            attempt.span.streamed(
                                response_id=progress.response_id,
                                model=progress.model,
                                finish=progress.finish,
                                usage=usage,
                            )
                            attempt.span_ended()
                except ProviderError as err:
                    if not attempt.streaming:
                        self._failed(err, attempt, call)
                        continue
                    # The caller has chunks already: the stream cannot fall back.
                    err.deployment = err.deployment or deployment.id
                    if err.retryable:
                        self._router.failed(
                            deployment, retry_after=self._cooldown(err), kind=CallKind.STREAM
                        )
                    raise
                problem = None
                if progress.text is not None:
                    assert request.response_format is not None
                    problem = output_problem("".join(progress.text), request.response_format)
                outcome = Outcome.SUCCESS if problem is None else Outcome.INVALID_OUTPUT
                call.attempts.append(
                    self._attempt(
                        deployment, attempt.model_group, outcome, attempt.elapsed(), problem or ""
                    )
                )
                yield StreamFinal(
                    id=progress.response_id,
                    model=progress.model,
                    finish_reason=progress.finish,
                    usage=usage,
                    route=self._facts(attempt, call, usage),
                    time_to_first_chunk_s=(progress.first_chunk_at or self._clock()) - started,
                    # A stream cannot fall back once it started: the final event says so.
                    validation_error=problem or "",
                )
                return
        raise AssertionError("the attempts end by raising")  # pragma: no cover

    async def _open_stream(
        self, request: CompletionRequest, attempt: AttemptScope, deadline: float | None
    ) -> tuple[ProviderStream, AsyncIterator[ProviderChunk], ProviderChunk]:
        """The upstream stream and its first chunk, within the deployment's stream_timeout."""
        deployment = attempt.deployment
        bound = deployment.stream_timeout_s
        if deadline is not None:
            bound = min(bound, max(0.0, deadline - self._clock()))
        upstream: ProviderStream | None = None
        try:
            async with asyncio.timeout(bound):
                upstream = await self._provider.stream(
                    deployment, request, timeout_s=min(bound, attempt.timeout_s)
                )
                chunks = aiter(upstream)
                first = await anext(chunks, None)
        except BaseException as exc:
            if upstream is not None:
                await upstream.aclose()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(
                    f"no first chunk within {bound:g}s", deployment=deployment.id
                ) from None
            raise
        if first is None:
            await upstream.aclose()
            raise UpstreamUnavailable(
                "the stream ended before its first chunk", deployment=deployment.id
            )
        return upstream, chunks, first

    async def _relay(
        self,
        attempt: AttemptScope,
        chunks: AsyncIterator[ProviderChunk],
        first: ProviderChunk,
        progress: _Progress,
    ) -> AsyncGenerator[StreamDelta, None]:
        """The upstream's chunks as deltas; a gap over `stream_idle_seconds` ends the stream."""
        idle_s = self._settings.routing.stream_idle_s
        chunk: ProviderChunk | None = first
        while chunk is not None:
            progress.response_id = progress.response_id or chunk.id
            progress.model = progress.model or chunk.model
            if chunk.finish_reason is not None:
                progress.finish = chunk.finish_reason
            if chunk.usage is not None:
                progress.usage = chunk.usage
            if chunk.content or chunk.tool_calls:
                if progress.first_chunk_at is None:
                    progress.first_chunk_at = self._clock()
                attempt.delivered += chunk.pieces
                attempt.span.add_output(chunk.content)
                if progress.text is not None:
                    progress.text.append(chunk.content)
                yield StreamDelta(content=chunk.content, tool_calls=chunk.tool_calls)
            try:
                async with asyncio.timeout(idle_s):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"the stream sent nothing for {idle_s:g}s", deployment=attempt.deployment.id
                ) from None

    def _new_call(self, request: CompletionRequest, kind: CallKind, log: _CallLog) -> _Call:
        """The call's state, once its budgets have room for it: nothing upstream before."""
        group = self.resolve(request.model)
        images = any(m.has_images for m in request.messages)
        if images and not any(self._router.takes_images(d) for d in self._settings.groups[group]):
            # As LiteLLM's pre-call checks: the caller's request, not an upstream failure.
            raise InvalidRequest(
                [
                    FieldViolation(
                        "messages",
                        f"model group {group!r} has no deployment that takes images "
                        "(model_info.supports_vision)",
                    )
                ]
            )
        prompt_tokens = self._provider.estimate_prompt_tokens(request)
        if self._budgets is not None:
            log.hold = self._budgets.admit(
                request.caller, self._worst_cost(request, group, prompt_tokens)
            )
        return _Call(
            group=group,
            kind=kind,
            prompt_tokens=prompt_tokens,
            attempts=log.attempts,
            images=images,
        )

    def _worst_cost(self, request: CompletionRequest, group: str, prompt_tokens: int) -> float:
        """The most the call may cost in its group: its prompt and output reservation."""
        worst = 0.0
        for deployment in self._settings.groups[group]:
            per_input, per_output = self.rates(deployment)
            output = self._output_reservation(request, deployment)
            worst = max(worst, prompt_tokens * per_input + output * per_output)
        return worst

    def _account(
        self,
        request: CompletionRequest,
        log: _CallLog,
        started: float,
        *,
        route: RouteFacts | None = None,
        usage: Usage | None = None,
        failure: BaseException | None = None,
    ) -> None:
        """Release the call's budget hold; add its spend and figures to the ledger, once."""
        if log.hold is not None:
            log.hold.release()
            log.hold = None
        if log.accounted:
            return
        log.accounted = True
        ledger = self._ledger
        group = request.model
        if ledger is None or group not in self._settings.groups:
            # A name that is no group (NOT_FOUND) is the caller's text: never an entity.
            return
        caller = request.caller
        usage = usage or Usage()
        attempts = []
        cut = log.streaming
        if failure is not None and cut is not None:
            # A stream that ended early: the provider bills the prompt and what it sent.
            usage = Usage(input_tokens=cut.prompt_tokens, output_tokens=cut.delivered)
            cost = self._provider.price(cut.deployment, usage)
            attempts.append(
                AttemptRecord(
                    deployment=cut.deployment.id,
                    provider=cut.deployment.provider,
                    outcome=_failure_kind(failure),
                    latency_s=cut.elapsed(),
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=cost,
                )
            )
        paid_usd = 0.0
        for i, attempt in enumerate(log.attempts):
            # The answering attempt is the last; an earlier one may have been billed too.
            answered = route is not None and i == len(log.attempts) - 1
            billed = usage if answered else attempt.usage or Usage()
            if answered and route is not None:
                cost = route.cost_usd
            elif attempt.usage is not None:
                cost = self._provider.price(self._deployments[attempt.deployment], billed)
                paid_usd += cost
            else:
                cost = 0.0
            attempts.append(
                AttemptRecord(
                    deployment=attempt.deployment,
                    provider=self._deployments[attempt.deployment].provider,
                    outcome=attempt.outcome.value,
                    latency_s=attempt.latency_s,
                    input_tokens=billed.input_tokens,
                    output_tokens=billed.output_tokens,
                    cost_usd=cost,
                )
            )
        cache = route.cache if route is not None else None
        ledger.record(
            CallRecord(
                group=group,
                key=caller.name if caller is not None else None,
                team=caller.team if caller is not None else None,
                outcome="success" if failure is None else _failure_kind(failure),
                latency_s=self._clock() - started,
                attempts=tuple(attempts),
                input_tokens=usage.input_tokens if cache is None else 0,
                output_tokens=usage.output_tokens if cache is None else 0,
                cost_usd=(
                    route.cost_usd + paid_usd
                    if route is not None
                    else sum(a.cost_usd for a in attempts)
                ),
                saved_usd=cache.cost_saved_usd if cache is not None else 0.0,
                cache_hit=cache is not None,
            )
        )

    @staticmethod
    def _inject_fault(request: CompletionRequest, attempt: AttemptScope, call: _Call) -> None:
        fault = request.fault
        if fault is not None and fault.applies(attempt.deployment.id, len(call.attempts)):
            raise fault.error(attempt.deployment.id)

    async def _attempts(
        self, request: CompletionRequest, call: _Call, deadline: float | None
    ) -> AsyncGenerator[AttemptScope, None]:
        """The attempts of one call, in order; ends by raising what the caller should see.

        A pass walks the group's deployments, their retries, then the
        fallback chain. A pass that admits nothing (every candidate out of
        headroom or cooling down) waits for the earliest to free up, when that
        fits in the deadline and the queue bound, and passes again. The
        consumer runs each attempt and reports a failure through `_failed`,
        which raises when nothing else may help or says where to go next.
        """
        while True:
            blocked = _Blocked()
            chain: list[str] = [
                call.group,
                *self._fallbacks(request, call.group, FallbackKind.GENERAL),
            ]
            per_group = 1 + self._settings.router.num_retries
            depth = 0
            while depth < len(chain):
                current = chain[depth]
                call.switch_to = None
                while call.used[current] < per_group:
                    picked = await self._admit(request, call, current, blocked)
                    if picked is None:
                        picked = await self._retry(request, call, current, blocked, deadline)
                    if picked is None:
                        break
                    call.used[current] += 1
                    call.tried.add(picked.deployment.id)
                    try:
                        timeout_s = self._attempt_timeout(picked.deployment, deadline)
                    except BaseException:
                        picked.reservation.release()
                        raise
                    yield AttemptScope(
                        deployment=picked.deployment,
                        model_group=current,
                        depth=depth,
                        reservation=picked.reservation,
                        prompt_tokens=call.prompt_tokens,
                        explored=picked.explored,
                        candidates=picked.candidates,
                        timeout_s=timeout_s,
                        span=self._recorder.attempt(
                            picked.deployment,
                            request,
                            stream=call.kind is CallKind.STREAM,
                            dropped=self._provider.dropped_params(picked.deployment, request),
                        ),
                        counts=self._counts,
                        clock=self._clock,
                    )
                    if call.switch_to is not None:
                        break
                if blocked.by_caller is not None:
                    break
                switch_to = call.switch_to
                if switch_to is None and blocked.too_small is not None and current == call.group:
                    switch_to = FallbackKind.CONTEXT_WINDOW
                if switch_to is not None:
                    targets = self._fallbacks(request, call.group, switch_to)
                    if not targets:
                        raise (
                            call.failures[-1]
                            if call.failures
                            else blocked.too_small
                            or (NoDeploymentAvailable(call.group, call.failures))
                        )
                    chain = [*chain[: depth + 1], *(t for t in targets if t not in chain)]
                depth += 1
            wait = self._wait(blocked)
            if wait is not None and wait <= self._queue_budget(call, deadline):
                await self._sleep(wait)
                call.queued_s += wait
                continue
            raise self._exhausted(call, blocked, wait)

    async def _retry(
        self,
        request: CompletionRequest,
        call: _Call,
        group: str,
        blocked: _Blocked,
        deadline: float | None,
    ) -> _Pick | None:
        """A deployment of `group` tried before, once more, after an exponential backoff.

        Only once every untried deployment is used up and the group failed
        with something worth retrying, as LiteLLM does, so a group of one
        deployment gets its `num_retries`. The backoff has jitter, so callers
        that failed together do not come back together, and counts from the
        group's last failure: a wait for a cooldown already served it. A group
        with nothing eligible now (cooling down) is left to the pass's wait.
        """
        failed_at = call.failed_at.get(group)
        if failed_at is None or blocked.by_caller is not None:
            return None
        again = self._router.eligible(
            group, exclude=(), prompt_tokens=call.prompt_tokens, images=call.images
        )
        if not again.candidates:
            if again.cooling_until is not None:
                blocked.cooling_until.append(again.cooling_until)
                blocked.cooling_for_quota = blocked.cooling_for_quota and again.cooling_for_quota
            return None
        retries = call.used[group] - len(
            {a.deployment for a in call.attempts if a.model_group == group}
        )
        backoff = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, retries))
        delay = backoff * (0.5 + 0.5 * self._rng.random()) - (self._clock() - failed_at)
        if delay > 0:
            if delay > self._queue_budget(call, deadline):
                return None
            await self._sleep(delay)
            call.queued_s += delay
        return await self._admit(request, call, group, blocked, retry=True)

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

    async def _admit(
        self,
        request: CompletionRequest,
        state: _Call,
        group: str,
        blocked: _Blocked,
        *,
        retry: bool = False,
    ) -> _Pick | None:
        """Choose among the eligible deployments the first that the limiter admits.

        `retry`: deployments this call tried already are candidates again.
        """
        eligible = self._router.eligible(
            group,
            exclude=() if retry else state.tried,
            prompt_tokens=state.prompt_tokens,
            images=state.images,
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
            result = await self._admission.reserve(deployment, tokens, extra_keys)
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
        """The output a call may produce: n answers of up to max_tokens each."""
        return request.options.answers * (
            request.sampling.max_tokens
            or deployment.max_output_tokens
            or self._settings.limits.default_max_tokens
        )

    def _failed(self, err: ProviderError, attempt: AttemptScope, call: _Call) -> None:
        """Record a failed attempt; raise it if nothing else may help, else say where to go."""
        deployment = attempt.deployment
        elapsed = attempt.elapsed()
        err.deployment = err.deployment or deployment.id
        paid = err.usage if isinstance(err, InvalidOutput) else None
        call.attempts.append(
            self._attempt(deployment, attempt.model_group, err.outcome, elapsed, err.message, paid)
        )
        call.failures.append(err)
        if isinstance(err, ContextWindowExceeded):
            call.switch_to = FallbackKind.CONTEXT_WINDOW
            return
        if isinstance(err, ContentPolicyViolation):
            call.switch_to = FallbackKind.CONTENT_POLICY
            return
        if not err.retryable:
            raise err
        call.failed_at[attempt.model_group] = self._clock()
        if isinstance(err, InvalidOutput):
            return  # the deployment answered; what it said was wrong: no cooldown
        self._router.failed(
            deployment,
            retry_after=self._cooldown(err),
            seconds=elapsed if isinstance(err, UpstreamTimeout) else None,
            kind=call.kind,
        )

    def _validates(self, request: CompletionRequest) -> bool:
        """Whether this call's answer is checked against its response_format."""
        if request.response_format is None or not request.response_format.wants_json:
            return False
        if request.validate_json is not None:
            return request.validate_json
        return self._settings.routing.validate_json

    def _check_output(
        self, request: CompletionRequest, attempt: AttemptScope, text: str, usage: Usage
    ) -> None:
        """Raise InvalidOutput when the answer is not the JSON asked for (validation on)."""
        if not self._validates(request):
            return
        assert request.response_format is not None
        problem = output_problem(text, request.response_format)
        if problem is not None:
            deployment = attempt.deployment.id
            raise InvalidOutput(f"{deployment}: {problem}", deployment=deployment, usage=usage)

    def _cooldown(self, err: ProviderError) -> float | None:
        """The pause a provider asked for, capped: its headers are not ours to trust."""
        if not isinstance(err, UpstreamRateLimited) or err.retry_after is None:
            return None
        return min(err.retry_after, self._settings.routing.max_cooldown_s)

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
            self._router.pause(deployment, min(max(pauses), self._settings.routing.max_cooldown_s))

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
            if all(isinstance(f, InvalidOutput) for f in state.failures):
                # Every deployment answered, none as asked: say why the last was refused.
                return state.failures[-1]
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
        deployment: Deployment,
        group: str,
        outcome: Outcome,
        latency_s: float,
        error: str = "",
        usage: Usage | None = None,
    ) -> Attempt:
        return Attempt(
            deployment=deployment.id,
            model_group=group,
            outcome=outcome,
            latency_s=latency_s,
            error=error,
            usage=usage,
        )

    def _facts(self, attempt: AttemptScope, call: _Call, usage: Usage) -> RouteFacts:
        return RouteFacts(
            deployment=attempt.deployment.id,
            model_group=attempt.model_group,
            attempts=tuple(call.attempts),
            fallback_depth=attempt.depth,
            cost_usd=self._provider.price(attempt.deployment, usage),
            strategy=self._router.strategy_name,
            explored=attempt.explored,
            queued_s=call.queued_s,
            candidates=attempt.candidates,
        )


def _failure_kind(failure: BaseException) -> str:
    """The ledger's name for how a call failed; `internal` outside the error tree."""
    return failure_kind(failure) or "internal"


def _caller_name(request: CompletionRequest) -> str | None:
    return request.caller.name if request.caller is not None else None
