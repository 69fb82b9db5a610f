"""Fakes for driving the gateway without a network: a clock and a scripted provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from switchboard.config import Deployment
from switchboard.domain import (
    CompletionRequest,
    FinishReason,
    Message,
    ProviderChunk,
    ProviderResponse,
    Role,
    Usage,
)
from switchboard.errors import ProviderError


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


Behaviour = Callable[[Deployment], ProviderError | None]


@dataclass
class ScriptedStream:
    chunks: list[ProviderChunk | ProviderError]
    closed: bool = False

    def __aiter__(self) -> AsyncIterator[ProviderChunk]:
        return self._run()

    async def _run(self) -> AsyncIterator[ProviderChunk]:
        for item in self.chunks:
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class ScriptedProvider:
    """Fails per deployment as `failures` says; otherwise answers. Records every call."""

    clock: FakeClock
    failures: dict[str, list[ProviderError]] = field(default_factory=dict)
    latency: float = 0.25
    calls: list[tuple[str, float]] = field(default_factory=list)
    streams: list[ScriptedStream] = field(default_factory=list)
    stream_script: dict[str, list[ProviderChunk | ProviderError]] = field(default_factory=dict)
    # Calls to these deployments wait until the event is set (to cancel them midway).
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=5, output_tokens=3))
    # Set when a call starts waiting on `hold`.
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    async def complete(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ProviderResponse:
        self.calls.append((deployment.id, timeout_s))
        self.clock.advance(self.latency)
        if deployment.id in self.hold:
            self.holding.set()
            await self.hold[deployment.id].wait()
        pending = self.failures.get(deployment.id)
        if pending:
            raise pending.pop(0)
        return ProviderResponse(
            id=f"resp-{deployment.id}",
            model=deployment.model,
            message=Message(Role.ASSISTANT, f"hello from {deployment.id}"),
            finish_reason=FinishReason.STOP,
            usage=self.usage,
        )

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ScriptedStream:
        self.calls.append((deployment.id, timeout_s))
        pending = self.failures.get(deployment.id)
        if pending:
            raise pending.pop(0)
        stream = ScriptedStream(list(self.stream_script.get(deployment.id, _good_chunks())))
        self.streams.append(stream)
        return stream

    def price(self, deployment: Deployment, usage: Usage) -> float:
        return 0.001 * usage.total_tokens

    async def aclose(self) -> None:
        return None

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        return sum(len(m.content) for m in request.messages)

    def dropped_params(self, deployment: Deployment, request: CompletionRequest) -> tuple[str, ...]:
        return ()


def _good_chunks() -> list[ProviderChunk | ProviderError]:
    return [
        ProviderChunk(content="Hel", id="s1", model="m"),
        ProviderChunk(content="lo"),
        ProviderChunk(finish_reason=FinishReason.STOP),
        ProviderChunk(usage=Usage(input_tokens=4, output_tokens=2)),
    ]
