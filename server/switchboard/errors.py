"""One error tree for the whole gateway.

Every failure the gateway reports is a `SwitchboardError`. Each class knows
its gRPC status, whether another deployment may succeed where this one
failed (`retryable`), the attempt outcome it records and its ErrorInfo
reason. `providers/` maps lower-layer exceptions into this tree in one
place; `api/` turns it into a gRPC status in one place.

    SwitchboardError
    ├── InvalidRequest            INVALID_ARGUMENT     (with field violations)
    ├── ModelNotFound             NOT_FOUND
    ├── Unauthenticated           UNAUTHENTICATED
    ├── PermissionDenied          PERMISSION_DENIED
    ├── CapacityExhausted         RESOURCE_EXHAUSTED   (our own limits; retry_after)
    │   └── BudgetExceeded        RESOURCE_EXHAUSTED   (a key's or team's spend; until reset)
    ├── DeadlineExceeded          DEADLINE_EXCEEDED    (the caller's deadline is spent)
    ├── NoDeploymentAvailable     UNAVAILABLE          (every candidate failed; keeps them all)
    ├── AllCoolingDown            UNAVAILABLE          (every candidate paused; retry_after;
    │                                                   RESOURCE_EXHAUSTED when for quota)
    └── ProviderError             one upstream attempt failed
        ├── UpstreamRateLimited       RESOURCE_EXHAUSTED  retryable, retry_after
        ├── UpstreamTimeout           DEADLINE_EXCEEDED   retryable
        ├── UpstreamUnavailable       UNAVAILABLE         retryable (5xx, connection errors,
        │                                                   malformed answers)
        ├── UpstreamBadRequest        INVALID_ARGUMENT
        ├── ContextWindowExceeded     INVALID_ARGUMENT    (context-window fallbacks)
        ├── ContentPolicyViolation    FAILED_PRECONDITION (content-policy fallbacks)
        ├── InvalidOutput             FAILED_PRECONDITION retryable (not the JSON asked for)
        ├── UpstreamAuthError         INTERNAL            next deployment (our key failed)
        ├── UpstreamNotFound          INTERNAL            next deployment (misconfigured model)
        └── UpstreamInternal          INTERNAL            retryable (unclassified provider failure)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from switchboard.domain import Outcome, Usage


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field. Both texts are clipped: a huge field must not make a huge error."""

    field: str
    description: str

    MAX_CHARS = 200

    def __post_init__(self) -> None:
        for name in ("field", "description"):
            text: str = getattr(self, name)
            if len(text) > self.MAX_CHARS:
                object.__setattr__(self, name, text[: self.MAX_CHARS - 3] + "...")


class SwitchboardError(Exception):
    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    retryable: bool = False
    outcome: Outcome = Outcome.INTERNAL
    log_level: int = logging.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def retry_after(self) -> float | None:
        """Seconds after which the same call may succeed; None when unknown."""
        return None

    def info(self) -> dict[str, str]:
        """ErrorInfo metadata: facts a client may act on, never secrets."""
        return {}


class InvalidRequest(SwitchboardError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"
    outcome = Outcome.BAD_REQUEST
    log_level = logging.INFO

    # What one refusal reports: the first violations, then a count. The message
    # (also what the log line says) lists as many as fit in MAX_MESSAGE_CHARS.
    MAX_VIOLATIONS = 20
    MAX_MESSAGE_CHARS = 1000

    def __init__(
        self, violations: Sequence[FieldViolation], *, more: int = 0, complete: bool = True
    ) -> None:
        """`more`: violations found beyond `violations`; `complete`: every check ran."""
        self.violations = tuple(violations[: self.MAX_VIOLATIONS])
        self.omitted = len(violations) - len(self.violations) + more
        self.complete = complete
        text = "invalid request: "
        listed = 0
        for v in self.violations:
            item = f"{'; ' if listed else ''}{v.field}: {v.description}"
            if listed and len(text) + len(item) > self.MAX_MESSAGE_CHARS:
                break
            text += item
            listed += 1
        if hidden := len(self.violations) - listed + self.omitted:
            text += f"; and {hidden} more"
        if not complete:
            text += "; checking stopped after the first violations"
        super().__init__(text)

    def info(self) -> dict[str, str]:
        return {"omitted_violations": str(self.omitted)} if self.omitted else {}


class ModelNotFound(SwitchboardError):
    status = grpc.StatusCode.NOT_FOUND
    reason = "MODEL_NOT_FOUND"
    outcome = Outcome.NOT_FOUND
    log_level = logging.INFO

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"model {model!r} is not a configured model group or alias")

    def info(self) -> dict[str, str]:
        return {"model": self.model}


class Unauthenticated(SwitchboardError):
    status = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"
    log_level = logging.INFO


class PermissionDenied(SwitchboardError):
    """A known caller key asked for a model it may not use; names the key, never its value."""

    status = grpc.StatusCode.PERMISSION_DENIED
    reason = "MODEL_NOT_ALLOWED"
    log_level = logging.INFO

    def __init__(self, model: str, *, key_name: str, allowed: Sequence[str]) -> None:
        self.model = model
        self.key_name = key_name
        super().__init__(
            f"caller key {key_name!r} may not use model {model!r}; "
            f"it may use {', '.join(repr(m) for m in allowed) or 'no model'}"
        )

    def info(self) -> dict[str, str]:
        return {"model": self.model, "key": self.key_name}


class NotAdmin(SwitchboardError):
    """A caller key without `admin: true` asked for an operator's RPC."""

    status = grpc.StatusCode.PERMISSION_DENIED
    reason = "ADMIN_REQUIRED"
    log_level = logging.WARNING

    def __init__(self, rpc: str, *, key_name: str) -> None:
        self.key_name = key_name
        super().__init__(f"{rpc} needs a caller key with `admin: true`; {key_name!r} is not one")

    def info(self) -> dict[str, str]:
        return {"key": self.key_name}


class CacheUnavailable(SwitchboardError):
    """The cache's backend failed while an operator's request needed it."""

    status = grpc.StatusCode.UNAVAILABLE
    reason = "CACHE_UNAVAILABLE"
    log_level = logging.WARNING


class CacheDisabled(SwitchboardError):
    """An operator asked for the cache of a gateway configured without one."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CACHE_DISABLED"
    log_level = logging.INFO


class StatsDisabled(SwitchboardError):
    """GetStats on a gateway built without a ledger (embedded uses; the server always has one)."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    reason = "STATS_DISABLED"
    log_level = logging.INFO


class CapacityExhausted(SwitchboardError):
    """Our own limits leave no room within the deadline or the queue bound."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "CAPACITY_EXHAUSTED"
    outcome = Outcome.RATE_LIMITED
    log_level = logging.WARNING

    def __init__(self, message: str, *, limit_key: str, wait_s: float | None) -> None:
        super().__init__(message)
        self.limit_key = limit_key
        self._wait_s = wait_s

    @property
    def retry_after(self) -> float | None:
        return self._wait_s

    def info(self) -> dict[str, str]:
        return {"limit": self.limit_key}


class BudgetExceeded(CapacityExhausted):
    """A key's or team's budget has no room for the call: refused before any upstream call.

    `limit_key` names the budget (`budget:key:NAME`, `budget:team:NAME`) for the
    QuotaFailure; the wait is the time until its window resets, None when the
    budget never resets or the call alone could never fit in it.
    """

    reason = "BUDGET_EXCEEDED"

    def __init__(self, message: str, *, budget: str, wait_s: float | None) -> None:
        super().__init__(message, limit_key=budget, wait_s=wait_s)

    def info(self) -> dict[str, str]:
        return {"budget": self.limit_key}


class DeadlineExceeded(SwitchboardError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"
    outcome = Outcome.TIMEOUT
    log_level = logging.INFO


# The longest wait a provider may ask for: a larger (or infinite) Retry-After
# would overflow durations downstream; routing caps it further by config.
MAX_RETRY_AFTER_S = 86_400.0


class ProviderError(SwitchboardError):
    """One upstream attempt failed; `deployment` says where.

    `message` is our own description (kind, deployment, the provider's HTTP
    status and error code) and is what callers, attempts and spans show.
    The provider's own words can quote our keys or organization: they stay
    in `upstream_detail`, already redacted, for the server log only.
    """

    def __init__(
        self,
        message: str,
        *,
        deployment: str = "",
        retry_after: float | None = None,
        http_status: int | None = None,
        upstream_code: str | None = None,
        upstream_detail: str = "",
    ):
        super().__init__(message)
        self.deployment = deployment
        self.http_status = http_status
        self.upstream_code = upstream_code
        self.upstream_detail = upstream_detail
        # Finite, >= 0 and bounded, or None: whatever the provider said.
        self._retry_after = (
            min(retry_after, MAX_RETRY_AFTER_S)
            if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0
            else None
        )

    @property
    def retry_after(self) -> float | None:
        return self._retry_after

    def info(self) -> dict[str, str]:
        info = {"deployment": self.deployment} if self.deployment else {}
        if self.http_status is not None:
            info["http_status"] = str(self.http_status)
        if self.upstream_code:
            info["upstream_code"] = self.upstream_code
        return info


class UpstreamRateLimited(ProviderError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "UPSTREAM_RATE_LIMITED"
    retryable = True
    outcome = Outcome.RATE_LIMITED
    log_level = logging.WARNING


class UpstreamTimeout(ProviderError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "UPSTREAM_TIMEOUT"
    retryable = True
    outcome = Outcome.TIMEOUT
    log_level = logging.WARNING


class UpstreamUnavailable(ProviderError):
    status = grpc.StatusCode.UNAVAILABLE
    reason = "UPSTREAM_UNAVAILABLE"
    retryable = True
    outcome = Outcome.UNAVAILABLE
    log_level = logging.WARNING


class UpstreamBadRequest(ProviderError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UPSTREAM_BAD_REQUEST"
    outcome = Outcome.BAD_REQUEST
    log_level = logging.INFO


class ContextWindowExceeded(ProviderError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    reason = "CONTEXT_WINDOW_EXCEEDED"
    outcome = Outcome.CONTEXT_WINDOW_EXCEEDED
    log_level = logging.INFO


class ContentPolicyViolation(ProviderError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CONTENT_POLICY_VIOLATION"
    outcome = Outcome.CONTENT_POLICY
    log_level = logging.INFO


class InvalidOutput(ProviderError):
    """The answer is not the JSON, or not the schema, the caller asked for.

    Another deployment may well answer properly, so the call moves on; when
    none does the caller learns why the last answer was refused.
    """

    status = grpc.StatusCode.FAILED_PRECONDITION
    reason = "INVALID_OUTPUT"
    retryable = True
    outcome = Outcome.INVALID_OUTPUT
    log_level = logging.INFO

    def __init__(self, message: str, *, deployment: str, usage: Usage) -> None:
        super().__init__(message, deployment=deployment)
        # The provider bills the refused answer like any other.
        self.usage = usage


class UpstreamAuthError(ProviderError):
    """The provider refused our key: the caller did nothing wrong."""

    status = grpc.StatusCode.INTERNAL
    reason = "UPSTREAM_AUTH_FAILED"
    retryable = True
    outcome = Outcome.AUTHENTICATION


class UpstreamNotFound(ProviderError):
    """The provider does not know the configured model: a config error of ours."""

    status = grpc.StatusCode.INTERNAL
    reason = "UPSTREAM_MODEL_NOT_FOUND"
    retryable = True
    outcome = Outcome.NOT_FOUND


class UpstreamInternal(ProviderError):
    status = grpc.StatusCode.INTERNAL
    reason = "UPSTREAM_ERROR"
    retryable = True
    outcome = Outcome.INTERNAL


class NoDeploymentAvailable(SwitchboardError):
    """Every candidate failed; keeps each failure in the order it happened."""

    status = grpc.StatusCode.UNAVAILABLE
    reason = "ALL_DEPLOYMENTS_FAILED"
    outcome = Outcome.UNAVAILABLE
    log_level = logging.WARNING

    def __init__(self, model_group: str, failures: Sequence[ProviderError]) -> None:
        self.model_group = model_group
        self.failures = tuple(failures)
        # Every candidate out of quota is a quota problem, not an outage.
        if self.failures and all(isinstance(f, UpstreamRateLimited) for f in self.failures):
            self.status = grpc.StatusCode.RESOURCE_EXHAUSTED
            self.reason = "ALL_DEPLOYMENTS_RATE_LIMITED"
        # Every candidate too slow: the caller sees the timeout, as the error table says.
        elif self.failures and all(isinstance(f, UpstreamTimeout) for f in self.failures):
            self.status = grpc.StatusCode.DEADLINE_EXCEEDED
            self.reason = "ALL_DEPLOYMENTS_TIMED_OUT"
        # Every provider refused our own keys: the caller did nothing wrong, and the
        # service cannot serve it until an operator fixes a key (never INTERNAL:
        # nothing upstream may make the gateway look broken).
        elif self.failures and all(isinstance(f, UpstreamAuthError) for f in self.failures):
            self.status = grpc.StatusCode.UNAVAILABLE
            self.reason = "ALL_DEPLOYMENTS_REFUSED_OUR_KEY"
        last = self.failures[-1].message if self.failures else "no deployment is eligible"
        super().__init__(
            f"every deployment of {model_group!r} failed ({len(self.failures)} attempts); "
            f"last: {last}"
        )

    @property
    def retry_after(self) -> float | None:
        waits = [f.retry_after for f in self.failures if f.retry_after is not None]
        return min(waits) if waits else None

    def info(self) -> dict[str, str]:
        return {"model_group": self.model_group, "attempts": str(len(self.failures))}


class AllCoolingDown(SwitchboardError):
    """Every deployment that could serve the call is paused and the pause outlasts the wait."""

    status = grpc.StatusCode.UNAVAILABLE
    reason = "ALL_DEPLOYMENTS_COOLING_DOWN"
    outcome = Outcome.UNAVAILABLE
    log_level = logging.WARNING

    def __init__(self, model_group: str, wait_s: float, *, quota: bool = False) -> None:
        why = "paused by its provider's rate limits" if quota else "cooling down"
        super().__init__(f"every deployment of {model_group!r} is {why} for at least {wait_s:.3f}s")
        # Paused for quota (Retry-After, rate-limit headers): a quota problem, not an outage.
        if quota:
            self.status = grpc.StatusCode.RESOURCE_EXHAUSTED
            self.reason = "ALL_DEPLOYMENTS_RATE_LIMITED"
        self.model_group = model_group
        self._wait_s = wait_s

    @property
    def retry_after(self) -> float | None:
        return self._wait_s

    def info(self) -> dict[str, str]:
        return {"model_group": self.model_group}


def failure_kind(error: BaseException) -> str | None:
    """A bounded name for how a call ended: the error tree's reason in lower case, or
    `cancelled` (the caller left); None for an exception outside the tree."""
    if isinstance(error, SwitchboardError):
        return error.reason.lower()
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return None
