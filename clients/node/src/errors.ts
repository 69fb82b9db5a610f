/**
 * Switchboard's error details, decoded from the `grpc-status-details-bin`
 * trailer (a serialized `google.rpc.Status`), the one place the gateway puts
 * its machine-readable reasons, retry delays and violations. grpc-js hands
 * the trailer over as raw bytes, so the decoding is ours.
 */
import { status as Status, type Metadata } from "@grpc/grpc-js";

import type { Any } from "./gen/google/protobuf/any.js";
import {
  BadRequest,
  type BadRequest_FieldViolation,
  ErrorInfo,
  QuotaFailure,
  type QuotaFailure_Violation,
  RetryInfo,
} from "./gen/google/rpc/error_details.js";
import { Status as RpcStatus } from "./gen/google/rpc/status.js";

/** The ErrorInfo domain of every error Switchboard itself raises. */
export const DOMAIN = "switchboard.dev";

const DETAILS_KEY = "grpc-status-details-bin";

/** What an error says, with the details Switchboard attached to it. */
export interface ErrorDetails {
  /** The gRPC status code (compare with `status` from this package). */
  code: Status;
  /** The status message. */
  message: string;
  /** ErrorInfo's UPPER_SNAKE_CASE reason, e.g. `MODEL_NOT_FOUND`; undefined without ErrorInfo. */
  reason: string | undefined;
  /** ErrorInfo's metadata (e.g. `model`, `limit`, `http_status`); empty without ErrorInfo. */
  metadata: Record<string, string>;
  /** RetryInfo's delay in milliseconds; undefined when the server gave none. */
  retryAfterMs: number | undefined;
  /** QuotaFailure's violations: which of Switchboard's own limits refused the call. */
  quotaViolations: QuotaFailure_Violation[];
  /** BadRequest's violations: which request fields were invalid, and why. */
  fieldViolations: BadRequest_FieldViolation[];
  errorInfo: ErrorInfo | undefined;
  retryInfo: RetryInfo | undefined;
  quotaFailure: QuotaFailure | undefined;
  badRequest: BadRequest | undefined;
}

interface GrpcLikeError {
  code: number;
  details?: unknown;
  message?: unknown;
  metadata?: Metadata;
}

function isGrpcError(err: unknown): err is GrpcLikeError {
  return (
    typeof err === "object" &&
    err !== null &&
    typeof (err as { code?: unknown }).code === "number" &&
    Status[(err as { code: number }).code] !== undefined
  );
}

/**
 * The details of `err`, a gRPC error from this client (or any grpc-js call).
 *
 * Never throws: anything that is not a gRPC error is `UNKNOWN` with no
 * details, and a trailer that does not decode, or whose code disagrees with
 * the call's own status (a proxy rewrote one but not the other), is ignored
 * rather than trusted.
 */
export function errorDetails(err: unknown): ErrorDetails {
  const result: ErrorDetails = {
    code: Status.UNKNOWN,
    message: err instanceof Error ? err.message : String(err),
    reason: undefined,
    metadata: {},
    retryAfterMs: undefined,
    quotaViolations: [],
    fieldViolations: [],
    errorInfo: undefined,
    retryInfo: undefined,
    quotaFailure: undefined,
    badRequest: undefined,
  };
  if (!isGrpcError(err)) {
    return result;
  }
  result.code = err.code as Status;
  if (typeof err.details === "string") {
    result.message = err.details;
  }
  const rpcStatus = decodeStatus(err.metadata);
  if (rpcStatus === undefined || rpcStatus.code !== err.code) {
    return result;
  }
  for (const detail of rpcStatus.details) {
    // First of each kind wins: the server sends at most one of each.
    switch (typeName(detail)) {
      case "google.rpc.ErrorInfo":
        result.errorInfo ??= unpack(detail, ErrorInfo);
        break;
      case "google.rpc.RetryInfo":
        result.retryInfo ??= unpack(detail, RetryInfo);
        break;
      case "google.rpc.QuotaFailure":
        result.quotaFailure ??= unpack(detail, QuotaFailure);
        break;
      case "google.rpc.BadRequest":
        result.badRequest ??= unpack(detail, BadRequest);
        break;
      default:
        break;
    }
  }
  result.reason = result.errorInfo?.reason;
  result.metadata = { ...result.errorInfo?.metadata };
  const delay = result.retryInfo?.retryDelay;
  if (delay !== undefined) {
    result.retryAfterMs = delay.seconds * 1000 + delay.nanos / 1e6;
  }
  result.quotaViolations = result.quotaFailure?.violations ?? [];
  result.fieldViolations = result.badRequest?.fieldViolations ?? [];
  return result;
}

function decodeStatus(metadata: Metadata | undefined): RpcStatus | undefined {
  const raw = metadata?.get(DETAILS_KEY)[0];
  if (!(raw instanceof Uint8Array)) {
    return undefined;
  }
  try {
    return RpcStatus.decode(raw);
  } catch {
    return undefined;
  }
}

/** The message name of an Any, whatever host its type URL names. */
function typeName(detail: Any): string {
  return detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1);
}

function unpack<T>(detail: Any, type: { decode(input: Uint8Array): T }): T | undefined {
  try {
    return type.decode(detail.value);
  } catch {
    return undefined;
  }
}
