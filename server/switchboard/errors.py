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
    ├── DeadlineExceeded          DEADLINE_EXCEEDED    (the caller's deadline is spent)
    ├── NoDeploymentAvailable     UNAVAILABLE          (every candidate failed; keeps them all)
    ├── AllCoolingDown            UNAVAILABLE          (every candidate paused; retry_after;
    │                                                   RESOURCE_EXHAUSTED when for quota)
    └── ProviderError             one upstream attempt failed
        ├── UpstreamRateLimited       RESOURCE_EXHAUSTED  retryable, retry_after
        ├── UpstreamTimeout           DEADLINE_EXCEEDED   retryable
        ├── UpstreamUnavailable       UNAVAILABLE         retryable (5xx, connection errors)
        ├── UpstreamBadRequest        INVALID_ARGUMENT
        ├── ContextWindowExceeded     INVALID_ARGUMENT    (context-window fallbacks)
        ├── ContentPolicyViolation    FAILED_PRECONDITION (content-policy fallbacks)
        ├── UpstreamAuthError         INTERNAL            next deployment (our key failed)
        ├── UpstreamNotFound          INTERNAL            next deployment (misconfigured model)
        └── UpstreamInternal          INTERNAL            retryable (unclassified provider failure)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from switchboard.domain import Outcome


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


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

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        text = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid request: {text}")


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


class DeadlineExceeded(SwitchboardError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"
    outcome = Outcome.TIMEOUT
    log_level = logging.INFO


class ProviderError(SwitchboardError):
    """One upstream attempt failed; `deployment` says where."""

    def __init__(self, message: str, *, deployment: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.deployment = deployment
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        return self._retry_after

    def info(self) -> dict[str, str]:
        return {"deployment": self.deployment} if self.deployment else {}


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
        # Every provider refused our own keys: our fault, not the caller's, not an outage.
        elif self.failures and all(isinstance(f, UpstreamAuthError) for f in self.failures):
            self.status = grpc.StatusCode.INTERNAL
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
