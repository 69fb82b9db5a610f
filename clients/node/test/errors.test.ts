/**
 * errorDetails() on trailers the live server never sends: BadRequest,
 * several details at once, and trailers to distrust.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { errorDetails, Metadata, type ServiceError, status } from "@switchboard/client";

import { Any } from "../src/gen/google/protobuf/any.js";
import { BadRequest, ErrorInfo, RetryInfo } from "../src/gen/google/rpc/error_details.js";
import { Status } from "../src/gen/google/rpc/status.js";

function pack(typeName: string, value: Uint8Array): Any {
  return Any.create({ typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(value) });
}

function serviceError(code: status, trailer?: Uint8Array): ServiceError {
  const metadata = new Metadata();
  if (trailer !== undefined) {
    metadata.set("grpc-status-details-bin", Buffer.from(trailer));
  }
  return Object.assign(new Error(`${code} refused`), { code, details: "refused", metadata });
}

const invalid = Status.encode(
  Status.create({
    code: status.INVALID_ARGUMENT,
    message: "refused",
    details: [
      pack(
        "google.rpc.ErrorInfo",
        ErrorInfo.encode(
          ErrorInfo.create({ reason: "INVALID_REQUEST", domain: "switchboard.dev", metadata: { n: "2" } }),
        ).finish(),
      ),
      pack("google.rpc.DebugInfo", new Uint8Array([0x0a, 0x01, 0x78])),
      pack(
        "google.rpc.RetryInfo",
        RetryInfo.encode(RetryInfo.create({ retryDelay: { seconds: 1, nanos: 500_000_000 } })).finish(),
      ),
      pack(
        "google.rpc.BadRequest",
        BadRequest.encode(
          BadRequest.create({
            fieldViolations: [{ field: "messages", description: "empty" }, { field: "max_tokens", description: "0" }],
          }),
        ).finish(),
      ),
    ],
  }),
).finish();

test("every detail kind decodes, unknown kinds are skipped", () => {
  const details = errorDetails(serviceError(status.INVALID_ARGUMENT, invalid));

  assert.equal(details.code, status.INVALID_ARGUMENT);
  assert.equal(details.message, "refused");
  assert.equal(details.reason, "INVALID_REQUEST");
  assert.deepEqual(details.metadata, { n: "2" });
  assert.equal(details.retryAfterMs, 1500);
  assert.deepEqual(
    details.fieldViolations.map((v) => [v.field, v.description]),
    [
      ["messages", "empty"],
      ["max_tokens", "0"],
    ],
  );
  assert.deepEqual(details.quotaViolations, []);
  assert.equal(details.quotaFailure, undefined);
});

test("a trailer whose code disagrees with the call's is not trusted", () => {
  const details = errorDetails(serviceError(status.UNAVAILABLE, invalid));

  assert.equal(details.code, status.UNAVAILABLE);
  assert.equal(details.reason, undefined);
  assert.equal(details.badRequest, undefined);
});

test("a trailer that does not decode is ignored", () => {
  const details = errorDetails(serviceError(status.INTERNAL, new Uint8Array([0xff, 0xff, 0xff])));

  assert.equal(details.code, status.INTERNAL);
  assert.equal(details.reason, undefined);
  assert.deepEqual(details.metadata, {});
});

test("an error without a trailer has its code and no details", () => {
  const details = errorDetails(serviceError(status.UNAVAILABLE));

  assert.equal(details.code, status.UNAVAILABLE);
  assert.equal(details.retryAfterMs, undefined);
});

test("anything but a gRPC error is UNKNOWN", () => {
  for (const thrown of [new Error("boom"), "boom", undefined, { code: 999 }]) {
    const details = errorDetails(thrown);

    assert.equal(details.code, status.UNKNOWN);
    assert.equal(details.errorInfo, undefined);
  }
});
