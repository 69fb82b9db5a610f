"""The one interface every provider adapter implements.

The gateway only ever sees this protocol and domain types, so routing,
limits and accounting can be tested against any implementation and the
adapter can change (litellm, a pooled-HTTP fast path) without them knowing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from switchboard.config import Deployment
from switchboard.domain import CompletionRequest, ProviderChunk, ProviderResponse, Usage


class ProviderStream(Protocol):
    """An open upstream stream.

    `aclose()` must close the upstream connection at once: the gateway calls
    it when the caller cancels, so no orphaned call keeps running.
    """

    def __aiter__(self) -> AsyncIterator[ProviderChunk]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    async def complete(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ProviderResponse:
        """One non-streaming call; raises a `ProviderError` on failure."""
        ...

    async def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> ProviderStream:
        """Open a stream; raises a `ProviderError` if it cannot be opened.

        Iterating may raise `ProviderError` too (a mid-stream failure).
        """
        ...

    def price(self, deployment: Deployment, usage: Usage) -> float:
        """The call's cost in USD; 0.0 when the price is unknown."""
        ...

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        """Tokens the prompt will likely count as, before the call; offline and cheap."""
        ...

    def dropped_params(self, deployment: Deployment, request: CompletionRequest) -> tuple[str, ...]:
        """The request's options this deployment's provider does not take: not sent."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections at shutdown."""
        ...


def configured_price(deployment: Deployment, usage: Usage) -> float | None:
    """The call's cost at the config's own per-token prices; None when it sets neither.

    Configured prices win over any price table: they are what the operator pays.
    """
    if deployment.input_cost_per_token is None and deployment.output_cost_per_token is None:
        return None
    return (deployment.input_cost_per_token or 0.0) * usage.input_tokens + (
        deployment.output_cost_per_token or 0.0
    ) * usage.output_tokens
