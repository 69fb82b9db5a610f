"""Switchboard errors -> gRPC statuses with `google.rpc` details.

The details travel in the `grpc-status-details-bin` trailer (grpcio-status),
so any gRPC client can decode them: ErrorInfo on every error, RetryInfo when
waiting can help, BadRequest for invalid fields, QuotaFailure for our own
limits.

Every answer is bounded, whatever the error holds: the message and the
serialized status (which repeats it) fit in MAX_ANSWER_BYTES together, so a
refusal costs little to send and stays far below grpc's 8 KiB default limit
on a client's trailing metadata. The errors bound their own texts first
(errors.InvalidRequest); this is the last line of defence for every kind.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from switchboard.errors import CapacityExhausted, InvalidRequest, SwitchboardError

DOMAIN = "switchboard.dev"
MAX_ANSWER_BYTES = 4096
# The grpc-message text, in UTF-8 bytes.
MAX_MESSAGE_BYTES = 1024
# The serialized google.rpc.Status: its copy of the message and the details.
MAX_STATUS_BYTES = MAX_ANSWER_BYTES - MAX_MESSAGE_BYTES
# Each ErrorInfo metadata value and QuotaFailure subject.
MAX_FACT_CHARS = 256


def to_status(error: SwitchboardError) -> grpc.Status:
    message = clip_utf8(error.message, MAX_MESSAGE_BYTES)
    details: list[any_pb2.Any] = []

    def add(detail: object) -> None:
        packed = any_pb2.Any()
        packed.Pack(detail)  # type: ignore[arg-type]
        details.append(packed)

    metadata = {k[:MAX_FACT_CHARS]: v[:MAX_FACT_CHARS] for k, v in error.info().items()}
    add(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))
    retry_after = error.retry_after
    if retry_after is not None and math.isfinite(retry_after):
        delay = duration_pb2.Duration()
        # Past Duration's range (10,000 years) is as good as never.
        delay.FromNanoseconds(min(max(0, math.ceil(retry_after * 1e9)), 315_576_000_000 * 10**9))
        add(error_details_pb2.RetryInfo(retry_delay=delay))
    bad_request = error_details_pb2.BadRequest()
    if isinstance(error, InvalidRequest):
        bad_request.field_violations.extend(
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        )
        add(bad_request)
    if isinstance(error, CapacityExhausted):
        add(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=error.limit_key[:MAX_FACT_CHARS], description=message
                    )
                ]
            )
        )
    status = status_pb2.Status(code=error.status.value[0], message=message, details=details)
    _fit(status, bad_request)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _fit(status: status_pb2.Status, bad_request: error_details_pb2.BadRequest) -> None:
    """Trim `status` to MAX_STATUS_BYTES: the last violations first, then whole details."""
    while status.ByteSize() > MAX_STATUS_BYTES:
        last = status.details[-1]
        if last.Is(error_details_pb2.BadRequest.DESCRIPTOR) and len(bad_request.field_violations):
            del bad_request.field_violations[-1]
            last.Pack(bad_request)
        elif len(status.details) > 1:
            del status.details[-1]
        else:  # ErrorInfo alone: keep its reason, drop its facts
            info = error_details_pb2.ErrorInfo()
            last.Unpack(info)
            info.ClearField("metadata")
            last.Pack(info)
            break


def clip_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary, marked when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


async def abort(context: grpc.aio.ServicerContext[object, object], error: SwitchboardError) -> None:
    """Ends the RPC with `error`'s status; never returns."""
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
