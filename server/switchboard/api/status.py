"""Switchboard errors -> gRPC statuses with `google.rpc` details.

The details travel in the `grpc-status-details-bin` trailer (grpcio-status),
so any gRPC client can decode them: ErrorInfo on every error, RetryInfo when
waiting can help, BadRequest for invalid fields, QuotaFailure for our own
limits.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from switchboard.errors import CapacityExhausted, InvalidRequest, SwitchboardError

DOMAIN = "switchboard.dev"


def to_status(error: SwitchboardError) -> grpc.Status:
    details: list[any_pb2.Any] = []

    def add(message: object) -> None:
        packed = any_pb2.Any()
        packed.Pack(message)  # type: ignore[arg-type]
        details.append(packed)

    add(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.info()))
    retry_after = error.retry_after
    if retry_after is not None and math.isfinite(retry_after):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(0, math.ceil(retry_after * 1e9)))
        add(error_details_pb2.RetryInfo(retry_delay=delay))
    if isinstance(error, InvalidRequest):
        add(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, CapacityExhausted):
        add(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=error.limit_key, description=error.message
                    )
                ]
            )
        )
    status = status_pb2.Status(code=error.status.value[0], message=error.message, details=details)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def abort(context: grpc.aio.ServicerContext[object, object], error: SwitchboardError) -> None:
    """Ends the RPC with `error`'s status; never returns."""
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
