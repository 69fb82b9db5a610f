"""The simulator's HTTP face: aiohttp routes speaking OpenAI chat completions.

One request goes: parse -> pick profile -> count prompt -> context window -> fault
draw -> plan the answer -> TPM budget -> respond (whole or streamed, maybe dropped).
Every response is written inside the handler, so the handler knows whether the
client got all of it; a client that leaves early is seen either as the handler being
cancelled (aiohttp's handler_cancellation, the prompt path) or as a failed write.

Routes: POST /v1/chat/completions (and /chat/completions), GET /v1/models,
GET /sim/stats, GET /sim/arrivals, GET /health. Anything else: OpenAI's 404 shape.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from . import replies, wire
from .budget import TokenBudget
from .chat import ChatRequest, ToolChoiceMode
from .content import Completion, ToolCallPlan, plan_completion, plan_json, plan_tool_call
from .faults import FaultKind
from .profiles import SimProfile, resolve_profile_name
from .request import InvalidRequest, parse_chat_request
from .stats import SimStats
from .timing import Timing, draw_timing, speed_at
from .tokens import count_prompt_tokens

FAULT_HEADER = "x-sim-fault"
NO_FAULT = "none"
DEFAULT_CONTEXT_TOKENS = 8192
"""The window a forced context-window fault reports for a profile without one."""
MAX_BODY_BYTES = 64 * 1024 * 1024
JSON_CONTENT_TYPE = "application/json"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Everything a simulator app needs from its composition root."""

    profiles: Mapping[str, SimProfile]
    default_profile: str
    rng: random.Random
    clock: Callable[[], float]
    """Monotonic seconds: the latency schedule, TPM windows, disconnect times."""
    wall_clock: Callable[[], float]
    """Epoch seconds, for the `created` field only."""
    sleep: Sleep
    allow_fault_headers: bool = False


@dataclass(slots=True)
class _Exchange:
    """Per-request facts the handler's exception paths need."""

    closed_by_us: bool = False
    finished: bool = False
    """The whole response reached the transport."""
    arrived_at: float = 0.0
    """When the request arrived, on the stats clock."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """The decided answer to one healthy (or mid-stream-dropped) request."""

    chat: ChatRequest
    profile_name: str
    quality: float
    meta: wire.ResponseMeta
    timing: Timing
    prompt_tokens: int
    completion: Completion | None
    tool_call: ToolCallPlan | None
    drop_after: int | None
    # The answers after the first when the request asked for n > 1.
    more: tuple[Completion, ...] = ()

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            return self.tool_call.completion_tokens
        assert self.completion is not None
        return len(self.completion.pieces) + sum(len(c.pieces) for c in self.more)

    @property
    def finish_reason(self) -> str:
        if self.tool_call is not None:
            return "tool_calls"
        assert self.completion is not None
        return self.completion.finish_reason

    @property
    def output_units(self) -> int:
        """Tokens (or argument fragments) paced by the inter-token delay."""
        if self.tool_call is not None:
            return len(self.tool_call.fragments)
        assert self.completion is not None
        return len(self.completion.pieces)


class _Respond(Exception):
    """Raised while planning to answer at once with an error reply."""

    def __init__(self, reply: replies.ErrorReply, fault: str | None = None) -> None:
        super().__init__(reply.status)
        self.reply = reply
        self.fault = fault


def _invalid(exc: InvalidRequest) -> _Respond:
    return _Respond(replies.invalid_request(exc.message, exc.param, exc.code))


class SimApp:
    """Builds the aiohttp application and holds the simulator's mutable state."""

    def __init__(self, settings: SimSettings, stats: SimStats) -> None:
        if settings.default_profile not in settings.profiles:
            raise ValueError(f"default profile {settings.default_profile!r} is not defined")
        self.settings = settings
        self.stats = stats
        self.started_at = settings.clock()
        self.stopping = False
        self._budgets: dict[str, TokenBudget] = {
            name: TokenBudget(profile.tpm_budget, profile.budget_window_s)
            for name, profile in settings.profiles.items()
            if profile.tpm_budget is not None
        }
        self._request_budgets: dict[str, TokenBudget] = {
            name: TokenBudget(profile.rpm_budget, profile.budget_window_s)
            for name, profile in settings.profiles.items()
            if profile.rpm_budget is not None
        }
        self._tasks: set[asyncio.Task[object]] = set()

    def build(self) -> web.Application:
        app = web.Application(middlewares=[_openai_http_errors], client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/models", self.models)
        app.router.add_get("/sim/stats", self.stats_json)
        app.router.add_get("/sim/arrivals", self.arrivals_json)
        app.router.add_get("/health", self.health)
        return app

    def cancel_in_flight(self) -> None:
        """Stop every running handler (shutdown); they are not counted as disconnects."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()

    # -- small routes --------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "switchboard-sim"}
            for name in self.settings.profiles
        ]
        return web.json_response({"object": "list", "data": data})

    async def stats_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def arrivals_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.arrivals_snapshot())

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    # -- chat completions ----------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        exchange = _Exchange(arrived_at=self.stats.request_started())
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._respond(request, exchange)
        except asyncio.CancelledError:
            if not (self.stopping or exchange.closed_by_us):
                self.stats.disconnect_noticed()
            raise
        finally:
            if task is not None:
                self._tasks.discard(task)
            self.stats.request_finished()

    async def _respond(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        try:
            plan = await self._plan(request, exchange)
        except _Respond as answer:
            if answer.fault is not None:
                self.stats.fault_injected(answer.fault)
            reply = answer.reply
            return await self._write_json(
                request, exchange, reply.status, reply.body, reply.headers
            )
        if plan is None:
            return web.Response()  # the connection was reset on purpose; nothing to send
        if plan.drop_after is not None:
            self.stats.fault_injected(FaultKind.MID_STREAM_DROP.value)
        if plan.chat.stream:
            return await self._stream(request, exchange, plan)
        return await self._complete(request, exchange, plan)

    async def _plan(self, request: web.Request, exchange: _Exchange) -> _Plan | None:
        settings = self.settings
        chat = await self._parse(request)
        profile_name = resolve_profile_name(chat.model, settings.profiles, settings.default_profile)
        profile = settings.profiles[profile_name]
        forced, fault = self._forced_fault(request)
        prompt_tokens = count_prompt_tokens(chat.messages, chat.tools)
        if fault is None:
            # A real limit, not an injected fault: only a forced fault skips it.
            self._check_context(profile, chat, prompt_tokens)
        if not forced:
            fault = profile.faults.draw(settings.rng)
        if fault is not None and fault is not FaultKind.MID_STREAM_DROP:
            await self._inject(request, exchange, fault, profile, chat, prompt_tokens)
            return None
        now = settings.clock()
        timing = draw_timing(speed_at(profile, now - self.started_at), settings.rng)
        content_rng = random.Random(
            chat.seed if chat.seed is not None else settings.rng.getrandbits(64)
        )
        completion: Completion | None = None
        tool_call: ToolCallPlan | None = None
        tool = chat.forced_tool() if chat.tool_choice is not ToolChoiceMode.NONE else None
        if tool is not None:
            tool_call = plan_tool_call(tool, content_rng, wire.random_id("call_", content_rng, 24))
        else:
            completion, *more = [
                self._answer(chat, profile, prompt_tokens, content_rng) for _ in range(chat.n)
            ]
        plan = _Plan(
            chat=chat,
            profile_name=profile_name,
            quality=profile.quality,
            meta=wire.ResponseMeta(
                id=wire.random_id("chatcmpl-", settings.rng),
                created=int(settings.wall_clock()),
                model=chat.model,
            ),
            timing=timing,
            prompt_tokens=prompt_tokens,
            completion=completion,
            tool_call=tool_call,
            drop_after=profile.faults.drop_after_chunks if fault is not None else None,
            more=tuple(more) if tool_call is None else (),
        )
        self._spend_budget(profile_name, chat, prompt_tokens + plan.completion_tokens, now)
        return plan

    def _answer(
        self, chat: ChatRequest, profile: SimProfile, prompt_tokens: int, rng: random.Random
    ) -> Completion:
        """One text or JSON answer of a drawn length."""
        if chat.response_format != "text":
            broken = self.settings.rng.random() < profile.broken_json_rate
            return plan_json(rng, chat.response_schema, broken=broken)
        length = rng.randint(profile.min_output_tokens, profile.max_output_tokens)
        max_tokens = chat.max_tokens
        if profile.max_context_tokens is not None:
            room = max(profile.max_context_tokens - prompt_tokens, 1)
            max_tokens = room if max_tokens is None else min(max_tokens, room)
        return plan_completion(rng, length, max_tokens, chat.stop)

    async def _parse(self, request: web.Request) -> ChatRequest:
        raw = await request.read()
        try:
            body: object = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        try:
            return parse_chat_request(body)
        except InvalidRequest as exc:
            raise _invalid(exc) from None

    def _forced_fault(self, request: web.Request) -> tuple[bool, FaultKind | None]:
        """(whether the header decides, the fault it forces); ignored unless allowed."""
        value = request.headers.get(FAULT_HEADER)
        if not self.settings.allow_fault_headers or value is None:
            return False, None
        value = value.strip().lower()
        if value == NO_FAULT:
            return True, None
        try:
            return True, FaultKind(value)
        except ValueError:
            choices = ", ".join([NO_FAULT, *(kind.value for kind in FaultKind)])
            raise _invalid(
                InvalidRequest(f"Unknown {FAULT_HEADER} {value!r}; expected one of: {choices}.")
            ) from None

    def _check_context(self, profile: SimProfile, chat: ChatRequest, prompt_tokens: int) -> None:
        limit = profile.max_context_tokens
        if limit is None:
            return
        if prompt_tokens > limit:
            raise _Respond(replies.context_length_exceeded(limit, prompt_tokens))
        if chat.max_tokens is not None and prompt_tokens + chat.max_tokens > limit:
            raise _Respond(replies.context_length_exceeded(limit, prompt_tokens, chat.max_tokens))

    def _spend_budget(self, profile_name: str, chat: ChatRequest, tokens: int, now: float) -> None:
        requests = self._request_budgets.get(profile_name)
        if requests is not None:
            wait = requests.try_spend(1, now)
            if wait is not None:
                reply = replies.requests_rate_limited(chat.model, requests.limit, wait)
                raise _Respond(reply, fault="rpm_budget")
        budget = self._budgets.get(profile_name)
        if budget is None:
            return
        wait = budget.try_spend(tokens, now)
        if wait is None:
            return
        if math.isinf(wait):
            reply = replies.request_too_large(chat.model, budget.limit, tokens)
        else:
            used = budget.used(now)
            reply = replies.tokens_rate_limited(chat.model, budget.limit, used, tokens, wait)
        reply.headers.update(self._budget_headers(profile_name, now))
        raise _Respond(reply, fault="tpm_budget")

    def _budget_headers(self, profile_name: str, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for unit, budget in (
            ("requests", self._request_budgets.get(profile_name)),
            ("tokens", self._budgets.get(profile_name)),
        ):
            if budget is not None:
                headers[f"x-ratelimit-limit-{unit}"] = str(budget.limit)
                headers[f"x-ratelimit-remaining-{unit}"] = str(budget.remaining(now))
                headers[f"x-ratelimit-reset-{unit}"] = replies.duration(budget.reset_in(now))
        return headers

    async def _inject(
        self,
        request: web.Request,
        exchange: _Exchange,
        fault: FaultKind,
        profile: SimProfile,
        chat: ChatRequest,
        prompt_tokens: int,
    ) -> None:
        """Fail before any response byte; raises `_Respond` unless the socket is reset."""
        faults = profile.faults
        limit = profile.max_context_tokens or DEFAULT_CONTEXT_TOKENS
        immediate: dict[FaultKind, Callable[[], replies.ErrorReply]] = {
            FaultKind.RATE_LIMIT: lambda: replies.rate_limited(chat.model, faults.retry_after_s),
            FaultKind.SERVER_ERROR: replies.server_error,
            FaultKind.UNAVAILABLE: replies.unavailable,
            FaultKind.CONTENT_POLICY: replies.content_policy_violation,
            FaultKind.AUTHENTICATION: replies.invalid_api_key,
            FaultKind.CONTEXT_WINDOW: lambda: replies.context_length_exceeded(
                limit, max(prompt_tokens, limit + 1)
            ),
        }
        if fault in immediate:
            raise _Respond(immediate[fault](), fault=fault.value)
        if fault is FaultKind.TIMEOUT:
            self.stats.fault_injected(fault.value)
            await self.settings.sleep(faults.hang_s)
            raise _Respond(replies.gateway_timeout())
        if fault is FaultKind.CONNECTION_RESET:
            self.stats.fault_injected(fault.value)
            exchange.closed_by_us = True
            _reset(request)
            return
        raise AssertionError(f"unhandled fault {fault}")

    # -- writing responses ---------------------------------------------------------

    def _headers(self, plan: _Plan | None = None) -> dict[str, str]:
        rng = self.settings.rng
        headers = {
            "x-request-id": "req_" + f"{rng.getrandbits(128):032x}",
            "openai-version": "2020-10-01",
            "openai-organization": replies.ORGANIZATION,
        }
        if plan is not None:
            # OpenAI reports the time to the response head: the first token when
            # streaming, the whole answer otherwise.
            processing_s = (
                plan.timing.ttft_s if plan.chat.stream else plan.timing.total_s(plan.output_units)
            )
            headers["openai-processing-ms"] = str(round(processing_s * 1000))
            headers["x-sim-profile"] = plan.profile_name
            headers["x-sim-quality"] = f"{plan.quality:g}"
            headers.update(self._budget_headers(plan.profile_name, self.settings.clock()))
        return headers

    async def _write_json(
        self,
        request: web.Request,
        exchange: _Exchange,
        status: int,
        body: wire.JsonObject,
        headers: Mapping[str, str] | None = None,
        drop_after: int | None = None,
    ) -> web.StreamResponse:
        data = wire.dumps(body).encode()
        response = web.StreamResponse(status=status, headers={**self._headers(), **(headers or {})})
        response.content_type = JSON_CONTENT_TYPE
        response.content_length = len(data)
        try:
            await response.prepare(request)
            if drop_after is not None:
                # Without streaming, "after k chunks" becomes "after part of the body".
                await response.write(data[: len(data) // 2])
                exchange.closed_by_us = True
                _close(request)
                return response
            await response.write(data)
            await response.write_eof()
        except ConnectionResetError:
            self._client_left(exchange)
            return response
        exchange.finished = True
        self.stats.response_completed(status)
        return response

    async def _complete(
        self, request: web.Request, exchange: _Exchange, plan: _Plan
    ) -> web.StreamResponse:
        await self.settings.sleep(plan.timing.total_s(plan.output_units))
        if plan.tool_call is not None:
            call = plan.tool_call
            message = wire.tool_calls_message(
                [wire.tool_call_json(call.call_id, call.name, call.arguments)]
            )
        else:
            assert plan.completion is not None
            message = wire.text_message(plan.completion.text)
        body = wire.completion(
            plan.meta, message, plan.finish_reason, plan.prompt_tokens, plan.completion_tokens
        )
        if plan.more:
            body["choices"] = [
                wire.choice(0, message, plan.finish_reason),
                *(
                    wire.choice(i, wire.text_message(answer.text), answer.finish_reason)
                    for i, answer in enumerate(plan.more, start=1)
                ),
            ]
        response = await self._write_json(
            request, exchange, 200, body, self._headers(plan), drop_after=plan.drop_after
        )
        if exchange.finished:
            self.stats.tokens_served(
                plan.prompt_tokens, plan.completion_tokens, arrived_at=exchange.arrived_at
            )
        return response

    async def _stream(
        self, request: web.Request, exchange: _Exchange, plan: _Plan
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=self._headers(plan))
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        response.headers["cache-control"] = "no-cache"
        pending: list[bytes] = []
        try:
            await response.prepare(request)
            await self.settings.sleep(plan.timing.ttft_s)
            first_output = True
            for sent, (event, is_output) in enumerate(_stream_events(plan)):
                if plan.drop_after is not None and sent >= plan.drop_after:
                    break
                if is_output and not first_output and plan.timing.inter_token_s > 0:
                    # Events between delays go out in one write: same bytes, fewer calls.
                    await _flush(response, pending)
                    await self.settings.sleep(plan.timing.inter_token_s)
                first_output = first_output and not is_output
                pending.append(event)
            if plan.drop_after is not None:
                await _flush(response, pending)
                exchange.closed_by_us = True
                _close(request)
                return response
            pending.append(wire.SSE_DONE)
            await _flush(response, pending)
            await response.write_eof()
        except ConnectionResetError:
            self._client_left(exchange)
            return response
        self.stats.tokens_served(
            plan.prompt_tokens, plan.completion_tokens, arrived_at=exchange.arrived_at
        )
        self.stats.response_completed(200)
        return response

    def _client_left(self, exchange: _Exchange) -> None:
        if not (exchange.closed_by_us or self.stopping):
            self.stats.disconnect_noticed()


def _stream_events(plan: _Plan) -> list[tuple[bytes, bool]]:
    """The SSE events of one streamed answer, as OpenAI sends them.

    The first chunk carries the role (and, for tool calls, the call's id and name),
    then one chunk per token or argument fragment, then an empty delta with the finish
    reason, then the usage chunk when asked for. Each event comes with whether it
    carries output, which is what the inter-token delay paces.
    """
    encoder = wire.ChunkEncoder(plan.meta, include_usage=plan.chat.include_usage)
    events: list[tuple[bytes, bool]] = []
    if plan.tool_call is not None:
        call = plan.tool_call
        head: wire.JsonObject = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ],
            "refusal": None,
        }
        events.append((encoder.encode(head), False))
        for fragment in call.fragments:
            delta: wire.JsonObject = {
                "tool_calls": [{"index": 0, "function": {"arguments": fragment}}]
            }
            events.append((encoder.encode(delta), True))
    else:
        assert plan.completion is not None
        role: wire.JsonObject = {"role": "assistant", "content": "", "refusal": None}
        events.append((encoder.encode(role), False))
        for piece in plan.completion.pieces:
            events.append((encoder.encode({"content": piece}), True))
    events.append((encoder.encode({}, plan.finish_reason), False))
    if plan.chat.include_usage:
        usage = wire.usage_chunk(plan.meta, plan.prompt_tokens, plan.completion_tokens)
        events.append((wire.sse(usage), False))
    return events


async def _flush(response: web.StreamResponse, pending: list[bytes]) -> None:
    if pending:
        data = b"".join(pending)
        pending.clear()
        await response.write(data)


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST, as a crashed upstream or a proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _close(request: web.Request) -> None:
    """Close the connection after what was written, leaving the body incomplete."""
    transport = request.transport
    if transport is not None:
        transport.close()


@web.middleware
async def _openai_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routing errors in OpenAI's error shape, so clients parse every failure alike."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            reply = replies.not_found(request.method, request.path)
        elif exc.status in (405, 413):
            message = f"{exc.reason} ({request.method} {request.path})"
            reply = replies.ErrorReply(exc.status, wire.error(message, "invalid_request_error"))
        else:
            raise
        return web.json_response(reply.body, status=reply.status)
