"""Faults injected on purpose, per request, to exercise real fallbacks in staging.

A caller sends `x-switchboard-fault: <kind>` (the first attempt fails that
way) or `<kind>@<deployment id>` (every attempt on that deployment does),
and only when `switchboard.routing.allow_fault_injection` is on. The gateway
raises the error instead of calling the provider, so the rest of the path
(classification, cooldowns, retries, fallbacks, limits) runs for real
against real providers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from switchboard.errors import (
    ContentPolicyViolation,
    ContextWindowExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

HEADER = "x-switchboard-fault"
# What an injected 429 asks the caller to wait.
INJECTED_RETRY_AFTER_S = 1.0

_KINDS: dict[str, Callable[[str], ProviderError]] = {
    "rate_limit": lambda d: UpstreamRateLimited(
        "injected 429", deployment=d, retry_after=INJECTED_RETRY_AFTER_S
    ),
    "server_error": lambda d: UpstreamUnavailable("injected 500", deployment=d),
    "unavailable": lambda d: UpstreamUnavailable("injected 503", deployment=d),
    "timeout": lambda d: UpstreamTimeout("injected timeout", deployment=d),
    "connection_reset": lambda d: UpstreamUnavailable("injected connection reset", deployment=d),
    "context_window": lambda d: ContextWindowExceeded("injected context window", deployment=d),
    "content_policy": lambda d: ContentPolicyViolation("injected content policy", deployment=d),
    "authentication": lambda d: UpstreamAuthError("injected 401", deployment=d),
}


@dataclass(frozen=True, slots=True)
class InjectedFault:
    kind: str
    # None: the call's first attempt, wherever it goes.
    deployment: str | None = None

    def applies(self, deployment_id: str, attempt_index: int) -> bool:
        if self.deployment is None:
            return attempt_index == 0
        return self.deployment == deployment_id

    def error(self, deployment_id: str) -> ProviderError:
        return _KINDS[self.kind](deployment_id)


def parse_fault(value: str) -> InjectedFault:
    """Raises ValueError naming the accepted kinds when `value` is not one."""
    kind, _, deployment = value.strip().partition("@")
    if kind not in _KINDS:
        raise ValueError(f"unknown fault {kind!r}; expected one of {', '.join(sorted(_KINDS))}")
    return InjectedFault(kind, deployment or None)
