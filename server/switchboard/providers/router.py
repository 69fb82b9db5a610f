"""Picks the adapter per deployment: the pooled-HTTP fast path or litellm.

The gateway sees one `Provider`; this one sends each call to the fast path
when the deployment is one it serves exactly as litellm would (see
`OpenAIHttpProvider.serves`), and to litellm otherwise. Both produce the
same domain types and errors, so the choice is invisible above this layer;
the integration tests of the error table, resilience and cancellation run
on both paths to keep it so.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from switchboard.config import Deployment
from switchboard.domain import CompletionRequest, ProviderResponse, Usage
from switchboard.providers.base import Provider, ProviderStream
from switchboard.providers.openai_http import OpenAIHttpProvider


class ProviderRouter:
    """A `Provider` that routes each deployment to `fast` when it serves it, else `general`."""

    def __init__(self, *, fast: OpenAIHttpProvider, general: Provider | None) -> None:
        """`general` may be None when every deployment takes the fast path (no litellm)."""
        self._fast = fast
        self._general = general
        # Per deployment id, the deployment it was decided for and whether fast serves it.
        self._decided: dict[str, tuple[Deployment, bool]] = {}

    def provider_for(self, deployment: Deployment) -> Provider:
        """The adapter that calls `deployment`; public so tests and logs can say which."""
        decided = self._decided.get(deployment.id)
        if decided is None or decided[0] is not deployment:
            decided = self._decided[deployment.id] = (deployment, self._fast.serves(deployment))
        if decided[1]:
            return self._fast
        if self._general is None:
            raise RuntimeError(f"no adapter was built for deployment {deployment.id!r}")
        return self._general

    # complete and stream hand on the adapter's own coroutine: no frame of their own per call.

    def complete(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> Coroutine[Any, Any, ProviderResponse]:
        return self.provider_for(deployment).complete(deployment, request, timeout_s=timeout_s)

    def stream(
        self, deployment: Deployment, request: CompletionRequest, *, timeout_s: float
    ) -> Coroutine[Any, Any, ProviderStream]:
        return self.provider_for(deployment).stream(deployment, request, timeout_s=timeout_s)

    def price(self, deployment: Deployment, usage: Usage) -> float:
        return self.provider_for(deployment).price(deployment, usage)

    async def aclose(self) -> None:
        await self._fast.aclose()
        if self._general is not None:
            await self._general.aclose()

    def dropped_params(self, deployment: Deployment, request: CompletionRequest) -> tuple[str, ...]:
        return self.provider_for(deployment).dropped_params(deployment, request)

    def estimate_prompt_tokens(self, request: CompletionRequest) -> int:
        # One estimator for both paths (the composition root gives both the same):
        # the reservation must not depend on the route.
        return self._fast.estimate_prompt_tokens(request)
