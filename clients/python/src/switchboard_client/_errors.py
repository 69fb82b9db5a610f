"""Exceptions for every failed call, decoded from the gateway's `google.rpc.Status`.

The gateway puts a `google.rpc.Status` in the `grpc-status-details-bin`
trailer: ErrorInfo on every error, RetryInfo when waiting can help,
QuotaFailure for its own limits, BadRequest for invalid fields. Decoding it
here (rather than through grpcio-status, which is untyped and would add a
dependency for a dozen lines) lets every exception carry typed facts.

    SwitchboardError
    ├── InvalidArgument      INVALID_ARGUMENT (.field_violations)
    ├── NotFound             NOT_FOUND
    ├── RateLimited          RESOURCE_EXHAUSTED (.retry_after, .quota_violations)
    ├── Unauthenticated      UNAUTHENTICATED
    ├── PermissionDenied     PERMISSION_DENIED (a model not the key's, an admin's RPC)
    ├── Unavailable          UNAVAILABLE
    ├── DeadlineExceeded     DEADLINE_EXCEEDED
    ├── FailedPrecondition   FAILED_PRECONDITION (e.g. content policy, no cache)
    ├── Cancelled            CANCELLED
    ├── Unimplemented        UNIMPLEMENTED
    └── Internal             INTERNAL, UNKNOWN, DATA_LOSS
    (ALREADY_EXISTS, ABORTED, OUT_OF_RANGE: SwitchboardError itself)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "switchboard.dev"
DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A bad field of the request (BadRequest), e.g. `messages[0].content`."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """A limit the call ran into (QuotaFailure): `subject` names the limit."""

    subject: str
    description: str


class SwitchboardError(Exception):
    """A call the gateway (or the transport) refused.

    `reason` and `metadata` come from ErrorInfo (`reason` is empty when the
    status carried none, as for a deadline that expired in this process);
    `retry_after` is RetryInfo's delay in seconds, None without one.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else type(self).code
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self.retry_after: float | None = retry_after

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


class InvalidArgument(SwitchboardError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self, message: str, *, field_violations: Iterable[FieldViolation] = (), **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.field_violations = tuple(field_violations)


class NotFound(SwitchboardError):
    code = grpc.StatusCode.NOT_FOUND


class RateLimited(SwitchboardError):
    """RESOURCE_EXHAUSTED: `retry_after` says when the same call may succeed (None: never
    by waiting alone), `quota_violations` which of the gateway's own limits refused it."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self, message: str, *, quota_violations: Iterable[QuotaViolation] = (), **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.quota_violations = tuple(quota_violations)


class Unauthenticated(SwitchboardError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SwitchboardError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(SwitchboardError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(SwitchboardError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(SwitchboardError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Cancelled(SwitchboardError):
    code = grpc.StatusCode.CANCELLED


class Unimplemented(SwitchboardError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(SwitchboardError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[SwitchboardError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def from_status(
    code: grpc.StatusCode, message: str, trailing_metadata: Iterable[tuple[str, str | bytes]]
) -> SwitchboardError:
    """The exception for a call that ended with `code`, decoding the details trailer."""
    kwargs: dict[str, Any] = {"code": code}
    fields: list[FieldViolation] = []
    quotas: list[QuotaViolation] = []
    status = _status(code, trailing_metadata)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            kwargs.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            kwargs["retry_after"] = retry.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            quotas.extend(QuotaViolation(v.subject, v.description) for v in quota.violations)
    cls = _BY_CODE.get(code, SwitchboardError)
    if cls is InvalidArgument:
        kwargs["field_violations"] = fields
    elif cls is RateLimited:
        kwargs["quota_violations"] = quotas
    return cls(message, **kwargs)


def from_rpc_error(error: grpc.RpcError) -> SwitchboardError:
    """The exception for a failed call of grpc's sync or asyncio API."""
    if isinstance(error, grpc.aio.AioRpcError):
        return from_status(error.code(), error.details() or "", error.trailing_metadata())
    if isinstance(error, grpc.Call):
        return from_status(error.code(), error.details() or "", error.trailing_metadata() or ())
    return SwitchboardError(str(error), code=grpc.StatusCode.UNKNOWN)


def _status(
    code: grpc.StatusCode, trailing_metadata: Iterable[tuple[str, str | bytes]]
) -> status_pb2.Status | None:
    """The details trailer, unless absent, garbled or about another status."""
    for key, value in trailing_metadata:
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:  # a garbled trailer must not hide the status itself
            return None
        return status if status.code == code.value[0] else None
    return None
